"""Escalations reach people: e-mail caught by a real SMTP server, a group bot by a real HTTP
receiver; warnings before the breach; four SLA clocks never escalate the same lapse twice;
a vacant level passes the lapse on, visibly."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import func, select, update

from models.cases import Case, Escalation
from models.db import unit_of_work
from models.org import Staff, StaffRole
from models.outbox import Notification
from models.steps import open_step
from notifications.delivery import deliver_due
from propflow import actions, sla


def _open_accept_step(demo, clock, n: int = 1) -> list[int]:
    ids = []
    for i in range(n):
        case = actions.open_repair(start_run=False, unit="1-1-101", category="public_area",
                                   priority="medium", reporter="业主张三", phone="13800138000",
                                   description=f"楼道灯不亮 {i}")
        with unit_of_work() as session:
            row = session.scalars(select(Case).where(Case.number == case["number"])).one()
            ids.append(open_step(session, case=row, key="accept#1", kind="accept",
                                 role="technician", assignee_id=demo["by_role"]["technician"],
                                 now=clock.now()).id)
    return ids


def _channels(smtp_server, http_receiver) -> dict:
    return {
        "email": {"kind": "email", "host": smtp_server.host, "port": smtp_server.port,
                  "sender": "kf@demo.propflow.local"},
        "ops_bot": {"kind": "wecom", "url": f"{http_receiver.url}/cgi-bin/webhook/send?key=k1"},
    }


def test_escalation_is_emailed_and_posted_to_the_group_bot(
        demo, clock, policy_with, smtp_server, http_receiver):
    from models.steps import record_escalation

    policy_with(channels=_channels(smtp_server, http_receiver),
                routes={"escalated": ["email", "ops_bot"], "warning": [], "step_opened": []})
    step_id = _open_accept_step(demo, clock)[0]
    clock.advance(timedelta(hours=2))  # a 30-minute business-hours window, long gone
    assert sla.tick(start_pending=False).lapsed == 1
    with unit_of_work() as session:  # what the case's flow run does on waking
        record_escalation(session, session.scalars(select(Escalation)).one(), clock.now())
    counts = deliver_due()
    assert counts == {"sent": 2, "retry": 0, "failed": 0}

    mail = smtp_server.wait_for(1)[0]
    supervisor = next(p for p in demo["staff"] if p["role"] == "cs_supervisor")
    assert mail["To"] == f"staff{supervisor['id']}@demo.propflow.local"
    assert "超时升级" in mail["Subject"]
    body = mail.get_content()
    assert "客服主管" in body and f"propflow steps decide {step_id}" in body

    post = http_receiver.wait_for(1)[0]
    assert post.json["msgtype"] == "markdown"
    assert "超时升级" in post.json["markdown"]["content"]


def test_failed_delivery_is_retried_with_backoff_and_failure_is_visible(
        demo, clock, policy_with, smtp_server, http_receiver):
    from models.steps import record_escalation

    policy_with(channels=_channels(smtp_server, http_receiver),
                routes={"escalated": ["ops_bot"], "warning": [], "step_opened": []})
    _open_accept_step(demo, clock)
    clock.advance(timedelta(hours=2))
    sla.tick(start_pending=False)
    with unit_of_work() as session:
        record_escalation(session, session.scalars(select(Escalation)).one(), clock.now())
    http_receiver.respond_once((500, "busy"))
    assert deliver_due()["retry"] == 1
    assert deliver_due() == {"sent": 0, "retry": 0, "failed": 0}  # not due again yet
    clock.advance(timedelta(seconds=31))
    assert deliver_due()["sent"] == 1
    with unit_of_work() as session:
        row = session.scalars(select(Notification).where(Notification.channel == "ops_bot")).one()
        assert (row.status, row.attempts) == ("sent", 2)

    # A bot that refuses the request for good is marked failed with its reason.
    http_receiver.respond_with({"errcode": 93000, "errmsg": "invalid webhook url"})
    _open_accept_step(demo, clock)
    clock.advance(timedelta(hours=2))
    sla.tick(start_pending=False)
    with unit_of_work() as session:  # the first step climbs to L2, the new one reaches L1
        pending = list(session.scalars(select(Escalation).where(Escalation.handled_at.is_(None))))
        for escalation in pending:
            record_escalation(session, escalation, clock.now())
    assert len(pending) == 2
    assert deliver_due() == {"sent": 0, "retry": 0, "failed": 2}
    failed = [n for n in actions.list_notifications() if n["status"] == "failed"]
    assert failed and "93000" in failed[0]["error"]


def test_assignee_is_warned_once_at_eighty_percent(demo, clock):
    _open_accept_step(demo, clock)
    clock.advance(timedelta(minutes=23))  # 30-minute window: 80 % is at 24 minutes
    assert sla.tick(start_pending=False).warned == 0
    clock.advance(timedelta(minutes=1))
    assert sla.tick(start_pending=False).warned == 1
    assert sla.tick(start_pending=False).warned == 0
    warnings = [n for n in actions.list_notifications() if n["event"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["recipient"] == f"staff:{demo['by_role']['technician']}"
    assert "即将超时" in warnings[0]["subject"]


def test_two_sla_clocks_never_escalate_the_same_lapse_twice(demo, clock):
    steps = _open_accept_step(demo, clock, n=20)
    # Past the 30-minute window, not past the supervisor's hour after it: one lapse each,
    # whether the replicas' passes overlap or run one after the other.
    clock.advance(timedelta(minutes=45))
    results: dict[str, int] = {}
    errors: dict[str, BaseException] = {}
    barrier = threading.Barrier(4)

    def replica(name: str) -> None:
        # A thread's exception is otherwise only printed: keep it, so the test sees it.
        try:
            barrier.wait(timeout=60)
            results[name] = sla.tick(start_pending=False).lapsed
        except BaseException as exc:  # noqa: BLE001
            errors[name] = exc

    threads = [threading.Thread(target=replica, args=(f"replica-{i}",), name=f"replica-{i}")
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [t.name for t in threads if t.is_alive()] == [], "every replica's pass finished"
    assert errors == {}, errors
    assert sorted(results) == [t.name for t in threads]
    assert sum(results.values()) == len(steps)
    with unit_of_work() as session:
        per_step = session.execute(select(Escalation.step_id, func.count()).group_by(
            Escalation.step_id)).all()
    assert len(per_step) == len(steps) and all(n == 1 for _, n in per_step)


def test_business_hours_window_stops_over_the_weekend(demo, clock):
    # Friday 2026-11-27 17:15 Shanghai: 15 minutes on Friday, the other 15 on Monday.
    clock.advance(timedelta(days=3, hours=8, minutes=15))
    step_id = _open_accept_step(demo, clock)[0]
    row = next(s for s in actions.list_steps() if s["id"] == step_id)
    assert row["due_at"] == "2026-11-30 08:45"
    clock.advance(timedelta(days=2))  # Sunday 17:00: nothing lapses on a weekend
    assert sla.tick(start_pending=False).lapsed == 0


def test_rows_taken_by_a_sender_that_died_are_sent_later(
        demo, clock, policy_with, smtp_server, http_receiver):
    from notifications import outbox

    policy_with(channels=_channels(smtp_server, http_receiver),
                routes={"escalated": [], "warning": [], "step_opened": ["ops_bot"]})
    _open_accept_step(demo, clock)
    with unit_of_work() as session:  # a replica takes the row, then crashes before sending
        assert len(outbox.claim_due(session, clock.now(), 10)) == 1
    assert deliver_due()["sent"] == 0  # still leased to the dead sender
    clock.advance(outbox.LEASE + timedelta(seconds=1))
    assert deliver_due()["sent"] == 1
    assert len(http_receiver.wait_for(1)) == 1


def test_residents_notice_names_no_one(demo, clock, policy_with):
    from models import broadcast
    from models.directory import case as load_case

    case = actions.report_emergency(start_run=False, kind="fire", community="YGHY",
                                    location="2号楼地下车库", reporter="保安王五",
                                    phone="13911112222", buildings=["1"])
    with unit_of_work() as session:
        told = broadcast.to_residents(session, load_case(session, case["number"]), "activated",
                                      key="t", now=clock.now())
        rows = list(session.scalars(select(Notification).where(
            Notification.recipient.like("resident:%"))))
    assert told == 12 and rows  # the demo's household in each unit of building 1
    for row in rows:
        assert "王五" not in row.subject + row.body and "13911112222" not in row.body
        assert "2号楼地下车库" in row.subject


def _deactivate(role: str) -> None:
    with unit_of_work() as session:
        session.execute(update(Staff).where(Staff.id.in_(
            select(StaffRole.staff_id).where(StaffRole.role == role))).values(active=False))


def test_escalation_to_a_vacant_role_reaches_the_next_level_visibly(demo, clock, caplog):
    """Finding 6: an escalation to a role nobody holds told nobody, silently. Now the next
    level that has someone is told why, may decide at once, and the skip is audited."""
    from models.steps import record_escalation

    _deactivate("cs_supervisor")  # the 客服主管 left and nobody holds the role yet
    step_id = _open_accept_step(demo, clock)[0]
    clock.advance(timedelta(hours=2))
    assert sla.tick(start_pending=False).lapsed == 1
    with caplog.at_level(logging.WARNING, logger="models.steps"), unit_of_work() as session:
        escalation = session.scalars(select(Escalation)).one()
        assert escalation.to_role == "cs_supervisor"
        told = record_escalation(session, escalation, clock.now())

    manager = next(p for p in demo["staff"] if p["role"] == "project_manager")
    assert told == [manager["name"]]
    with unit_of_work() as session:
        [message] = session.scalars(select(Notification).where(
            Notification.event == "escalated")).all()
        assert message.recipient == f"staff:{manager['id']}"
        assert "请项目经理介入" in message.subject
        assert "本项目没有在职的客服主管，因此直接由您处理" in message.body

    case = actions.show_case(actions.list_cases()[0]["number"])
    unstaffed = [e for e in case["timeline"] if e["action"] == "escalation_unstaffed"]
    assert len(unstaffed) == 1, case["timeline"]
    detail = unstaffed[0]["detail"]
    assert (detail["role"], detail["told_role"], detail["told_level"]) == \
        ("cs_supervisor", "project_manager", 2)
    warned = [r.getMessage() for r in caplog.records if r.name == "models.steps"]
    assert len(warned) == 1 and "cs_supervisor" in warned[0] and "project_manager" in warned[0]

    # The manager is at their own level now, so the step is theirs to decide.
    row = next(s for s in actions.list_steps() if s["id"] == step_id)
    assert row["level"] == 2
    actions.decide(step_id, manager["id"], {"note": "已督办"})
