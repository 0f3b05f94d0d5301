"""One SLA pass claims a whole batch with a few statements: steps of several procedures,
calendars, roles and lapse rules each get their own outcome, warnings reach each step's own
people once, and neither a second clock nor a replay writes anything twice."""

from __future__ import annotations

import gc
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from models import steps
from models.cases import Case, Escalation, Step
from models.db import unit_of_work
from models.outbox import AuditEvent, Notification, insert_notifications
from propflow import actions, sla

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _staff(demo, role: str, nth: int = 0) -> int:
    return [p["id"] for p in demo["staff"] if p["role"] == role][nth]


def _case(opened: dict) -> Case:
    with unit_of_work() as session:
        return session.scalars(select(Case).where(Case.number == opened["number"])).one()


def _repair(i: int = 0) -> dict:
    return actions.open_repair(start_run=False, unit="1-1-101", category="public_area",
                               priority="medium", reporter="业主张三", phone="13800138000",
                               description=f"楼道灯不亮 {i}")


def _step(opened: dict, key: str, kind: str, role: str, clock,
          assignee: int | None = None) -> int:
    with unit_of_work() as session:
        case = session.scalars(select(Case).where(Case.number == opened["number"])).one()
        return steps.open_step(session, case=case, key=key, kind=kind, role=role,
                               assignee_id=assignee, now=clock.now()).id


def _local(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%a %H:%M")


def _ticks(n: int) -> list[sla.Pass]:
    """n SLA clocks passing at once (replicas), each in its own thread."""
    results: list[sla.Pass] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def replica() -> None:
        try:
            barrier.wait(timeout=60)
            results.append(sla.tick(start_pending=False))
        except BaseException as exc:  # noqa: BLE001 - the test must see a thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(results) == n
    return results


def test_one_pass_gives_each_step_of_a_mixed_batch_its_own_outcome(demo, clock):
    """Expire and escalate steps, business-hours and 24x7 calendars, three procedures, a
    manager's own step (which never escalates below its role) and a step only at its warning
    time, all in one pass; a step past both its warning and its due time lapses unwarned."""
    responder = _staff(demo, "csr", 1)
    callback = _step(_repair(0), "callback#1", "callback", "owner", clock)  # 24 h, expires
    clock.advance(timedelta(hours=23, minutes=50))  # Wed 08:50, business hours from 08:30
    accept = _step(_repair(1), "accept#1", "accept", "technician", clock,
                   _staff(demo, "technician"))  # 30 business minutes: due 09:20
    own = _step(_repair(2), "accept#1", "accept", "cs_supervisor", clock,
                _staff(demo, "cs_supervisor"))  # a supervisor's own step, due 09:20
    emergency = actions.report_emergency(start_run=False, kind="fire", community="YGHY",
                                         location="2号楼地下车库", reporter="保安王五",
                                         phone="13911112222", buildings=["1"])
    activate = _step(emergency, "activate#1", "activate", "cs_supervisor", clock)  # 24x7 10 m
    complaint = actions.open_complaint(start_run=False, unit="1-1-101", complainant="业主张三",
                                       phone="13800138000", category="service",
                                       description="前台态度差", received_by=responder)
    acknowledge = _step(complaint, "acknowledge#1", "acknowledge", "csr", clock, responder)
    clock.advance(timedelta(minutes=10))  # Wed 09:00
    warned = _step(_repair(3), "accept#1", "accept", "technician", clock,
                   _staff(demo, "technician", 1))  # due 09:30, warned at 09:24
    clock.advance(timedelta(minutes=25))  # Wed 09:25

    result = sla.tick(start_pending=False)
    assert (result.lapsed, result.warned) == (5, 1)
    with unit_of_work() as session:
        rows = {s.id: s for s in session.scalars(select(Step))}
        escalations = {e.step_id: (e.level, e.to_role, _local(e.lapsed_at))
                       for e in session.scalars(select(Escalation))}
        told = session.execute(select(Notification.event, Notification.case_id).where(
            Notification.event == "warning")).all()
        audit = sorted((a.action, a.detail["step"], a.detail.get("to_role"))
                       for a in session.scalars(select(AuditEvent).where(
                           AuditEvent.action.in_(["lapsed", "step_expired", "warned"]))))
    assert (rows[callback].status, rows[callback].breached, rows[callback].level) == \
        ("lapsed", True, 0)
    assert callback not in escalations
    assert escalations == {
        accept: (1, "cs_supervisor", "Wed 09:20"),
        own: (1, "project_manager", "Wed 09:20"),  # never down to the supervisor below
        activate: (1, "project_manager", "Wed 09:00"),
        acknowledge: (1, "cs_supervisor", "Wed 09:20"),
    }
    # Each new window is the level's own, on the step's own calendar, from when it lapsed.
    assert {i: (_local(rows[i].due_at), rows[i].breached, rows[i].warn_at)
            for i in escalations} == {
        accept: ("Wed 10:20", True, None),     # cs_supervisor: 1 business hour
        own: ("Wed 11:20", True, None),        # project_manager: 2 business hours
        activate: ("Wed 09:05", True, None),   # emergency's project_manager: 5 min, 24x7
        acknowledge: ("Wed 10:20", True, None),
    }
    assert (rows[warned].status, rows[warned].level, rows[warned].warn_at) == \
        ("waiting", 0, None)
    assert told == [("warning", rows[warned].case_id)]  # nobody else warned: theirs lapsed
    assert audit == sorted([
        ("step_expired", "callback#1", None), ("lapsed", "accept#1", "cs_supervisor"),
        ("lapsed", "accept#1", "project_manager"), ("lapsed", "activate#1", "project_manager"),
        ("lapsed", "acknowledge#1", "cs_supervisor"), ("warned", "accept#1", None)])

    # The emergency's 5 minutes ran out at 09:05: the next pass takes it one level up, and
    # at the top of its chain it stays breached and waiting, escalated no further.
    assert sla.tick(start_pending=False).lapsed == 1
    assert sla.tick(start_pending=False).lapsed == 0
    with unit_of_work() as session:
        step = session.get(Step, activate)
        levels = [(e.level, e.to_role, _local(e.lapsed_at)) for e in step.escalations]
        assert (step.status, step.breached, step.level) == ("waiting", True, 2)
    assert levels == [(1, "project_manager", "Wed 09:00"), (2, "company_cs", "Wed 09:05")]


def test_each_warning_of_a_batch_reaches_its_own_steps_people_once(demo, clock):
    responder = _staff(demo, "csr", 1)
    technician = _staff(demo, "technician")
    assigned = _step(_repair(0), "accept#1", "accept", "technician", clock, technician)
    unassigned = _step(_repair(1), "accept#1", "accept", "technician", clock)
    complaint = actions.open_complaint(start_run=False, unit="1-1-101", complainant="业主张三",
                                       phone="13800138000", category="service",
                                       description="前台态度差", received_by=responder)
    acknowledge = _step(complaint, "acknowledge#1", "acknowledge", "csr", clock,
                        _staff(demo, "csr"))
    clock.advance(timedelta(minutes=24))  # 80 % of each 30-minute window

    assert sla.tick(start_pending=False).warned == 3
    assert sla.tick(start_pending=False).warned == 0
    with unit_of_work() as session:
        numbers = {s.id: s.case.number for s in session.scalars(select(Step))}
        sent = session.execute(select(Notification.dedupe_key, Notification.recipient,
                                      Notification.subject, Notification.body).where(
            Notification.event == "warning")).all()
    to = {(key.split("|")[0], recipient) for key, recipient, _, _ in sent}
    technicians = {f"staff:{_staff(demo, 'technician', i)}" for i in range(3)}
    assert to == {(f"step:{assigned}:warning", f"staff:{technician}"),
                  *((f"step:{unassigned}:warning", t) for t in technicians),
                  (f"step:{acknowledge}:warning", f"staff:{_staff(demo, 'csr')}"),
                  (f"step:{acknowledge}:warning", f"staff:{responder}")}  # first responder
    assert len(sent) == len(to)
    for key, _, subject, body in sent:
        step_id = int(key.split(":")[1])
        assert "即将超时" in subject
        assert numbers[step_id] in subject + body  # its own case, not a neighbour's
        assert "已用去时限的 80%" in body and "升级至客服主管" in body


def test_two_clocks_on_the_same_batch_warn_and_escalate_each_step_once(demo, clock,
                                                                        monkeypatch):
    # Batches of 4: on PostgreSQL each clock claims two batches at once, four transactions
    # over the same 30 steps.
    monkeypatch.setattr(sla, "BATCH", 4)
    ids = [_step(_repair(i), "accept#1", "accept", "technician", clock,
                 _staff(demo, "technician", i % 3)) for i in range(30)]
    clock.advance(timedelta(minutes=24))
    assert sum(r.warned for r in _ticks(2)) == len(ids)
    clock.advance(timedelta(minutes=21))  # past the 30 minutes, within the supervisor's hour
    assert sum(r.lapsed for r in _ticks(2)) == len(ids)
    assert gc.isenabled()  # the collector, off during each batch, is back
    with unit_of_work() as session:
        def per_step(*where) -> list[int]:  # type: ignore[no-untyped-def]
            return sorted(session.execute(select(func.count()).select_from(AuditEvent)
                                          .where(*where).group_by(AuditEvent.case_id)).scalars())
        warnings = session.scalar(select(func.count()).select_from(Notification).where(
            Notification.event == "warning"))
        escalations = session.execute(select(Escalation.step_id, func.count())
                                      .group_by(Escalation.step_id)).all()
        assert per_step(AuditEvent.action == "warned") == [1] * len(ids)
        assert per_step(AuditEvent.action == "lapsed") == [1] * len(ids)
    assert warnings == len(ids)
    assert sorted(escalations) == [(i, 1) for i in ids]


def test_a_step_decided_after_the_snapshot_is_neither_warned_nor_lapsed(demo, clock):
    technician = _staff(demo, "technician")
    first, second = (_step(_repair(i), "accept#1", "accept", "technician", clock, technician)
                     for i in range(2))
    clock.advance(timedelta(minutes=24))
    with unit_of_work() as session:
        warn = steps.warn_ids(session, clock.now())
    actions.decide(first, technician, {"note": "马上到"})
    with unit_of_work() as session:
        assert steps.claim_warnings(session, clock.now(), "test", warn) == 1
    with unit_of_work() as session:  # the same batch again, as a replay would: nothing
        assert steps.claim_warnings(session, clock.now(), "test", warn) == 0

    clock.advance(timedelta(minutes=10))
    with unit_of_work() as session:
        due = steps.due_ids(session, clock.now())
    assert due == [second]
    actions.decide(second, technician, {"note": "马上到"})
    with unit_of_work() as session:
        assert steps.claim_lapses(session, clock.now(), "test", due) == []
        assert session.scalar(select(func.count()).select_from(Escalation)) == 0


def test_an_outbox_row_already_written_is_skipped_not_doubled(demo, clock):
    def row(key: str, body: str) -> dict:
        return dict(dedupe_key=key, case_id=None, event="warning", recipient="staff:1",
                    recipient_name="王芳", channel="inbox", address="staff:1", lang="zh-CN",
                    subject="s", body=body, status="delivered", attempts=0,
                    next_attempt_at=clock.now(), last_error="", created_at=clock.now(),
                    sent_at=clock.now())

    with unit_of_work() as session:
        insert_notifications(session, [row("a", "first")])
    with unit_of_work() as session:
        insert_notifications(session, [row("a", "again"), row("b", "new")])
    with unit_of_work() as session:
        bodies = dict(session.execute(select(Notification.dedupe_key, Notification.body)).all())
    assert bodies == {"a": "first", "b": "new"}


def test_a_batch_writes_its_rows_as_given(demo, clock):
    """What a message says reaches the table unchanged: quotes, new lines, braces and
    backslashes in its text, a text message's parameters, a time given in Beijing time."""
    at = datetime(2026, 11, 24, 18, 30, tzinfo=SHANGHAI)
    body = '王芳：\n"3-2-1201" 的{灯}\\不亮，请于 18:30 前处理。\t完'
    params = {"template": "SMS_1", "params": [["number", "BX-1"], ["due", "18:30"]]}
    row = dict(dedupe_key="k", case_id=None, event="warning", recipient="staff:1",
               recipient_name="王芳", channel="sms", address="x", lang="zh-CN", subject="提醒",
               body=body, status="pending", attempts=0, next_attempt_at=at, last_error="",
               created_at=at, sent_at=None, params=params)
    with unit_of_work() as session:
        insert_notifications(session, [row, row | {"dedupe_key": "none", "params": None}])
    with unit_of_work() as session:
        written = {n.dedupe_key: n for n in session.scalars(select(Notification))}
    assert written["k"].body == body and written["k"].params == params
    assert written["none"].params is None and written["k"].sent_at is None
    assert written["k"].next_attempt_at == at and written["k"].created_at.utcoffset() is not None
    with pytest.raises(Exception, match="expected an aware datetime"):  # not a guess at UTC
        with unit_of_work() as session:
            insert_notifications(session, [row | {"dedupe_key": "naive",
                                                  "created_at": at.replace(tzinfo=None)}])
    with unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 2


def test_a_pass_finds_due_and_warned_steps_through_an_index(demo, clock):
    """A pass over many waiting steps with nothing due reads a few index entries, not every
    waiting step (migration 0005); on SQLite the plan of each question names its index."""
    from sqlalchemy import event, inspect

    from models.db import get_engine

    engine = get_engine()
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("steps")}
    assert indexes["ix_steps_status_due_at"] == ["status", "due_at"]
    assert indexes["ix_steps_status_level_warn_at"] == ["status", "level", "warn_at"]
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL's plan depends on its statistics; the bench prints it
    asked: list[tuple[str, object]] = []

    def keep(conn, cursor, sql, params, *_):  # type: ignore[no-untyped-def]
        asked.append((sql, params))
    event.listen(engine, "before_cursor_execute", keep)
    try:
        with unit_of_work() as session:
            steps.due_ids(session, clock.now())
            steps.warn_ids(session, clock.now())
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    plans = []
    with engine.connect() as conn:
        for sql, params in asked:
            if sql.startswith("SELECT steps.id"):
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()  # type: ignore[arg-type]
                plans.append(" ".join(row[-1] for row in rows))
    assert len(plans) == 2
    assert "USING COVERING INDEX ix_steps_status_due_at" in plans[0]
    assert "USING INDEX ix_steps_status_level_warn_at" in plans[1]


def test_a_lapse_whose_run_was_woken_is_not_woken_again(demo, clock, monkeypatch):
    """The pass wakes each lapsed step's run once and records it (one statement for the
    batch); the next pass redelivers only to runs it could not wake."""
    from sqlalchemy import update

    from tasks import runs

    woken: list[str | None] = []

    def wake(run_id: str | None) -> runs.Wake:
        woken.append(run_id)
        return runs.Wake(run_id != "run-away")

    monkeypatch.setattr(runs, "wake", wake)
    technician = _staff(demo, "technician")
    ids = [_step(_repair(i), "accept#1", "accept", "technician", clock, technician)
           for i in range(3)]
    with unit_of_work() as session:
        for step_id, run_id in zip(ids, ["run-0", "run-1", "run-away"], strict=True):
            session.execute(update(Case).where(Case.id == session.get(Step, step_id).case_id)
                            .values(flow_run_id=run_id))
    clock.advance(timedelta(minutes=45))
    first = sla.tick(start_pending=False)
    assert (first.lapsed, first.woken) == (3, 2)
    assert sorted(woken, key=str) == ["run-0", "run-1", "run-away", "run-away"]  # + redelivery
    woken.clear()
    assert sla.tick(start_pending=False).redelivered == 0
    assert woken == ["run-away"]  # only the run that was never reached
    with unit_of_work() as session:
        delivered = {e.step_id: e.delivered_at is not None
                     for e in session.scalars(select(Escalation))}
    assert delivered == {ids[0]: True, ids[1]: True, ids[2]: False}


def test_a_clock_skips_the_steps_another_clock_is_claiming(demo, clock, db):
    """On PostgreSQL clocks run side by side: a second clock passes over the steps the first
    holds mid-claim instead of waiting on them, and each step is claimed once."""
    import pytest
    from sqlalchemy import text

    if not db.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: the second clock waits its turn")
    technician = _staff(demo, "technician")
    lapsing = [_step(_repair(i), "accept#1", "accept", "technician", clock, technician)
               for i in range(3)]
    clock.advance(timedelta(minutes=12))
    warning = [_step(_repair(i), "accept#1", "accept", "technician", clock, technician)
               for i in range(3, 6)]
    clock.advance(timedelta(minutes=24))  # the first three past due, the others at 80 %
    at = clock.now()
    with unit_of_work() as first:
        due, warn = steps.due_ids(first, at), steps.warn_ids(first, at)
        assert (due, warn) == (lapsing, warning)
        taken = steps.claim_lapses(first, at, "clock-1", due)
        warned = steps.claim_warnings(first, at, "clock-1", warn)
        with unit_of_work() as second:
            second.execute(text("SET LOCAL lock_timeout = '5s'"))  # a wait fails, not hangs
            assert steps.claim_lapses(second, at, "clock-2", due) == []
            assert steps.claim_warnings(second, at, "clock-2", warn) == 0
    assert [lapse.step_id for lapse in taken] == lapsing and warned == 3
    assert sla.tick(start_pending=False).lapsed == 0  # and nothing left for a later pass
    with unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Escalation)) == 3
