"""Inspection rounds 巡查 (PROCEDURES.md §7): plans checked by the policy, rounds made once per
fire time, the training clock making a week's rounds, a round lapsing to the supervisor, and
what each finding sets off (a linked repair, a rectification notice and its follow-up, an
emergency, the warranty centre and next month's recheck)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.errors import PropflowError
from core.policy import get_policy
from models import inspection
from models.cases import Case, CaseLink, Step
from models.db import unit_of_work
from models.inspection import InspectionRound
from models.outbox import AuditEvent
from propflow import actions
from propflow.cli import app
from tasks import runs
from tasks.inspection import open_rounds
from tests.conftest import SHANGHAI
from tests.flowkit import CaseRun, until
from tests.test_policy import broken, refused

runner = CliRunner()


class RoundRun(CaseRun):
    procedure = "inspection"


def told(number: str, event: str) -> list[dict]:
    return [n for n in actions.show_case(number)["notifications"] if n["event"] == event]


def staff_key(demo: dict, role: str) -> str:
    return f"staff:{demo['by_role'][role]}"


# --- the plans in the policy ------------------------------------------------------------------

@pytest.mark.parametrize(("edit", "key", "expected"), [
    (lambda plans: plans["grounds"].update(cron="30 25 * * *"),
     "procedures.inspection.plans.grounds.cron", "不是有效的 cron 表达式"),
    (lambda plans: plans["grounds"].update(role="stewardess"),
     "procedures.inspection.plans.grounds.role", "'stewardess'"),
    (lambda plans: plans["shops"].update(start="18:00"),
     "procedures.inspection.plans.shops", "巡查时段"),
    (lambda plans: plans["leisure"].update(checkpoints={}),
     "procedures.inspection.plans.leisure.checkpoints", "没有检查点"),
    (lambda plans: plans["leisure"]["checkpoints"].update({"Play Area": {
        "label": "游乐区", "items": ["器械"]}}),
     "procedures.inspection.plans.leisure.checkpoints", "检查点编号"),
    (lambda plans: plans["vacant_units"].update(timezone="Asia/Beijing"),
     "procedures.inspection.plans.vacant_units.timezone", "未知的时区"),
    (lambda plans: plans.update({"Night-Patrol": plans["grounds"]}),
     "procedures.inspection.plans.Night-Patrol", "计划编号不合规"),
    (lambda plans: plans["renovation"].update(covers="roofs"),
     "procedures.inspection.plans.renovation.covers", "public_facilities"),
])
def test_a_bad_plan_is_refused_naming_its_field(policy_with, edit, key, expected):
    path = broken(policy_with, lambda p: edit(p["procedures"]["inspection"]["plans"]))
    refused(path, key, expected)


def test_each_plan_is_a_deployment_on_its_cron_in_shanghai_time():
    from propflow import schedules
    from propflow.service import deployments

    plans = get_policy().procedures["inspection"].plans
    served = {d.name: d for d in deployments() if d.flow_name == "inspection"}
    assert set(served) == {"inspection", *plans}
    for key, plan in plans.items():
        assert served[key].parameters == {"plan": key}
        (schedule,) = served[key].schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (plan.cron,
                                                                        "Asia/Shanghai")
        assert (f"inspection/{key}", plan.cron, "Asia/Shanghai") in schedules.scheduled()


# --- the planner: one round per plan, community, area and fire time ---------------------------

def test_rounds_are_made_once_however_many_planners_run(demo, db):
    policy = get_policy()
    start = datetime(2026, 11, 24, 0, 0, tzinfo=SHANGHAI)  # a Tuesday
    with unit_of_work(write=False) as session:
        due = inspection.due_rounds(session, policy, start, start + timedelta(days=1))
    plans = {d.plan for d in due}
    assert plans == {"public_facilities", "renovation", "grounds", "shops", "leisure",
                     "supervisor_patrol"}  # vacant units: Mondays, Wednesdays, Fridays
    # Two replicas at once, then a repeated pass: each round once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = list(pool.map(lambda _: open_rounds(due, start=False), range(2)))
    assert sorted(made[0] + made[1]) == sorted(set(made[0] + made[1]))
    assert len(made[0]) + len(made[1]) == len(due)
    assert open_rounds(due, start=False) == []
    with unit_of_work(write=False) as session:
        rounds = session.scalar(select(func.count()).select_from(InspectionRound))
        cases = session.scalar(select(func.count()).select_from(Case).where(
            Case.procedure == "inspection"))
    assert rounds == cases == len(due) == 10  # 1 + 1 + 2 + 2 + 3 + 1 on a Tuesday


def test_stewards_split_the_buildings_between_them(demo, db):
    from models.org import Staff, StaffRole

    with unit_of_work() as session:
        community = session.scalar(select(StaffRole.community_id).where(
            StaffRole.role == "steward"))
        second = Staff(company_id=1, name="钱进", phone="13900000099")
        session.add(second)
        session.flush()
        session.add(StaffRole(staff_id=second.id, community_id=community, role="steward"))
        session.flush()
        plan = get_policy().procedures["inspection"].plans["public_facilities"]
        found = inspection.areas(session, community, plan)
        patrol = inspection.areas(session, community,
                                  get_policy().procedures["inspection"].plans["supervisor_patrol"])
    first = demo["by_role"]["steward"]
    assert [(a.key, a.staff_id, a.buildings) for a in found] == [
        (f"s{first}", first, ("1", "2")), (f"s{second.id}", second.id, ("3",))]
    assert [(a.key, a.buildings) for a in patrol] == [("all", ("1", "2", "3"))]


# --- training mode: the simulated clock drives the schedules ----------------------------------

@pytest.fixture
def training(training_mode):  # type: ignore[no-untyped-def]
    """Training mode, Prefect away; the real time is the evening before National Day."""
    training_mode(2026, 9, 29, 22, 0)


def cli(*args: str) -> dict | list:
    done = runner.invoke(app, [*args, "--json"])
    assert done.exit_code == 0, (done.stdout, done.stderr, done.exception)
    return json.loads(done.stdout)


def test_advancing_the_training_clock_a_week_makes_its_rounds_skipping_holidays(training):
    assert cli("clock", "show")["now"] == "2026-09-30 09:00"  # a Wednesday, then 国庆
    moved = cli("clock", "advance", "7d")
    assert moved["now"] == "2026-10-07 09:00"
    listed = [c for c in cli("cases", "list") if c["number"].startswith("XC-")]
    assert moved["rounds"] == len(listed)
    with unit_of_work(write=False) as session:
        fired: dict[str, list[date]] = {}
        for plan, at in session.execute(select(InspectionRound.plan, InspectionRound.fire_at)
                                        .order_by(InspectionRound.fire_at)):
            fired.setdefault(plan, []).append(at.astimezone(SHANGHAI).date())
    week = [date(2026, 10, d) for d in range(1, 8)]
    assert fired["public_facilities"] == week  # daily, holidays too
    # Three times a day: 30 September's 11:30 and 14:30 were still ahead at 09:00.
    assert fired["leisure"] == [date(2026, 9, 30)] * 2 + [d for d in week[:-1]
                                                          for _ in range(3)] + [week[-1]]
    # Working days only: the holiday week leaves 30 September's renovation round alone.
    assert fired["renovation"] == [date(2026, 9, 30)]
    assert "vacant_units" not in fired and "supervisor_patrol" not in fired
    # Each round is numbered in its own day's series, not the day the advance made it.
    with unit_of_work(write=False) as session:
        numbered = session.execute(select(Case.number, InspectionRound.fire_at).join(
            InspectionRound, InspectionRound.case_id == Case.id)).all()
    assert {n.split("-")[1] for n, _ in numbered} == {f"{d:%Y%m%d}" for d in week} | {"20260930"}
    assert all(n.split("-")[1] == f"{at.astimezone(SHANGHAI):%Y%m%d}" for n, at in numbered)
    # Advancing again over the same fire times makes none twice.
    again = cli("clock", "advance", "1h")
    assert "rounds" not in again


# --- a round run: lapse, findings ---------------------------------------------------------------

@pytest.mark.usefixtures("prefect_api")
def test_a_round_checked_in_lapses_to_the_supervisor_and_a_broken_facility_opens_a_repair(
        demo, clock):
    run = RoundRun(demo, clock)  # public facilities, 09:00 to 17:30
    steward = demo["by_role"]["steward"]
    lobby = run.step("checkpoint#lobby")
    assert lobby["role"] == "steward"
    with unit_of_work() as session:
        inspection.check_in(session, community="YGHY", plan="public_facilities",
                            checkpoint="lobby", staff_id=steward, at=clock.now())
    with unit_of_work() as session:
        checked = session.get(Step, lobby["id"]).context["check_ins"]
    assert [c["staff_id"] for c in checked] == [steward]
    run.decide("checkpoint#lobby", "steward", not_ok="照明", finding="broken_facility",
               unit="1-1-101", note="一楼大堂两盏灯不亮")
    (link,) = until("the repair linked", lambda: run.show()["links"])
    assert link["relation"] == "repair_from_round"
    repair = actions.show_case(link["case"])
    assert repair["procedure"] == "repair" and "一楼大堂两盏灯不亮" in repair["description"]
    assert {"relation": "repair_from_round (from)", "case": run.number} in repair["links"]

    # Nobody checked the fire exits or the rooftop by 17:30: the 客服主管 is told of each.
    run.lapse("checkpoint#fire_exit")
    run.handled("checkpoint#fire_exit", 1)
    run.handled("checkpoint#rooftop", 1)
    escalated = told(run.number, "escalated")
    assert [n["recipient"] for n in escalated] == [staff_key(demo, "cs_supervisor")] * 2
    assert all("检查点巡查" in n["subject"] for n in escalated)
    assert run.show()["status"] != "closed"  # a round lapsed is still to be done
    run.decide("checkpoint#fire_exit", "cs_supervisor", note="补查：通道畅通")
    run.decide("checkpoint#rooftop", "steward")
    assert run.finish() == "done"
    assert actions.show_case(run.number)["status"] == "closed"
    with pytest.raises(PropflowError) as caught, unit_of_work() as session:
        inspection.check_in(session, community="YGHY", plan="public_facilities",
                            checkpoint="lobby", staff_id=steward, at=clock.now())
    assert caught.value.field == "checkpoint" and "没有进行中的公共设施巡查" in caught.value.message


@pytest.mark.usefixtures("prefect_api")
def test_a_shop_failing_fire_safety_gets_a_notice_and_a_follow_up(demo, clock):
    run = RoundRun(demo, clock, plan="shops")  # 09:00 to 14:00
    run.decide("checkpoint#frontage", "steward")
    with pytest.raises(PropflowError) as caught:
        run.decide("checkpoint#fire_safety", "steward", finding="fire_safety", note="灭火器过期")
    assert caught.value.field == "unit"
    run.decide("checkpoint#fire_safety", "steward", not_ok="灭火器", finding="fire_safety",
               unit="1-1-102", note="灭火器过期，疏散通道堆放杂物")
    follow = run.step("follow_up#fire_safety")  # once the notice has gone
    with unit_of_work() as session:
        assert session.get(Step, follow["id"]).due_at == clock.now() + timedelta(days=3)
    notice = told(run.number, "rectification_notice")
    assert {n["recipient"].split(":")[0] for n in notice} == {"owner", "staff"}
    assert all("整改通知书" in n["subject"] and "1-1-102" in n["subject"] for n in notice)
    with unit_of_work() as session:
        recorded = session.scalars(select(AuditEvent.detail).where(
            AuditEvent.action == "rectification_notice")).all()
    assert [r["shop"] for r in recorded] == ["1-1-102"]
    clock.advance(timedelta(days=3))
    run.decide("follow_up#fire_safety", "steward", rectified=False, note="仍未更换灭火器")
    assert run.finish() == "done"
    (overdue,) = told(run.number, "not_rectified")
    assert overdue["recipient"] == staff_key(demo, "cs_supervisor")


@pytest.mark.usefixtures("prefect_api")
def test_a_gas_smell_opens_a_linked_emergency(demo, clock):
    run = RoundRun(demo, clock, plan="grounds")
    run.decide("checkpoint#garage", "steward", finding="gas_smell", note="车库入口有燃气味")
    (link,) = until("the emergency linked", lambda: run.show()["links"])
    emergency = actions.show_case(link["case"])
    assert (link["relation"], emergency["procedure"], emergency["category"]) == (
        "emergency_from_round", "emergency", "gas_leak")
    assert "车库入口有燃气味" in emergency["description"]
    run.decide("checkpoint#roads", "steward")
    assert run.finish() == "done"


@pytest.mark.usefixtures("prefect_api")
def test_a_vacant_units_defect_goes_to_the_warranty_centre_and_is_rechecked_next_month(
        demo, clock):
    run = RoundRun(demo, clock, plan="vacant_units")
    run.decide("checkpoint#units", "steward", not_ok="渗漏", finding="vacant_defect",
               unit="3-1-201", note="卫生间顶棚渗水")
    assert run.finish() == "done"
    (warranty,) = told(run.number, "vacant_defect")
    assert warranty["recipient"] == staff_key(demo, "developer_warranty")
    assert "3-1-201" in warranty["subject"]

    # This month's next round does not repeat it; next month's first one shows it.
    same_month = actions.open_case("inspection", {
        "plan": "vacant_units", "community": "YGHY", "at": "2026-11-27T08:30"},
        start_run=False)
    clock.advance(timedelta(days=13))  # Monday 7 December
    later = RoundRun(demo, clock, plan="vacant_units")
    with unit_of_work(write=False) as session:
        duty = session.get(Step, later.step("checkpoint#units")["id"]).context["duty"]
    assert "3-1-201 卫生间顶棚渗水" in duty and run.number in duty
    assert "3-1-201" not in json.dumps(actions.show_case(same_month["number"]),
                                       ensure_ascii=False)
    later.decide("checkpoint#units", "steward", note="已复查，保修中心已修复")
    assert later.finish() == "done"


@pytest.mark.usefixtures("prefect_api")
def test_a_plans_scheduled_run_makes_the_rounds_of_its_fire_time_once(demo, clock):
    from flows.inspection import inspection as inspection_flow

    assert inspection_flow(plan="grounds") == "planned 1"  # 08:30's round, until 13:30
    assert inspection_flow(plan="grounds") == "planned 0"
    with unit_of_work(write=False) as session:
        (row,) = session.scalars(select(InspectionRound)).all()
    assert row.fire_at == datetime(2026, 11, 24, 8, 30, tzinfo=SHANGHAI)
    assert row.ends_at == datetime(2026, 11, 24, 13, 30, tzinfo=SHANGHAI)


@pytest.mark.usefixtures("prefect_api")
def test_serve_creates_a_plans_next_run_with_its_plan():
    from uuid import UUID

    from prefect.client.orchestration import get_client

    from propflow import schedules, service

    deployment = next(d for d in service.deployments() if d.name == "grounds")
    deployment.apply()
    at = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    made = schedules.ensure_next_runs(at)
    with get_client(sync_client=True) as client:
        found = [client.read_flow_run(UUID(i)) for i in made]
    (run,) = [r for r in found if r.parameters.get("plan") == "grounds"]
    assert run.expected_start_time == datetime(2026, 11, 30, 13, 30, tzinfo=SHANGHAI)


# --- served: each decision lands on a suspended run that replays ------------------------------

@pytest.mark.slow
def test_a_round_served_opens_a_repair_and_closes_by_replays(service, demo):
    from tests.servekit import decide, run_of, state

    service.start()
    steward = demo["by_role"]["steward"]
    number = actions.open_case("inspection", {"plan": "public_facilities",
                                              "community": "YGHY"})["number"]
    decide(number, "checkpoint#lobby", steward, finding="broken_facility", unit="1-2-301",
           note="电梯厅照明损坏")
    decide(number, "checkpoint#fire_exit", steward)
    decide(number, "checkpoint#rooftop", steward, not_ok="排水", note="排水口有落叶，已清理")
    until("closed", lambda: actions.show_case(number)["status"] == "closed")
    until("its run to complete", lambda: state(run_of(number) or "") == "Completed")
    (link,) = actions.show_case(number)["links"]
    repair = actions.show_case(link["case"])
    assert repair["procedure"] == "repair" and "电梯厅照明损坏" in repair["description"]
    with unit_of_work(write=False) as session:
        decided = session.scalars(select(Step.key).join(Case).where(
            Case.number == number, Step.status == "decided")).all()
        opened = session.scalar(select(func.count()).select_from(CaseLink))
    assert sorted(decided) == ["checkpoint#fire_exit", "checkpoint#lobby", "checkpoint#rooftop"]
    assert opened == 1  # the replays opened no second repair
    assert told(number, "step_opened")
    assert not [n for n in actions.show_case(number)["notifications"]
                if n["recipient"].startswith("owner:")]


def test_with_prefect_away_a_pass_starts_nothing_more_after_the_first_refusal(demo, db, caplog):
    """A week's rounds made while Prefect is away: the SLA pass gives up at the first start
    that cannot reach it (each try waits out the client's retries), and starts the rest on a
    later pass, once Prefect answers."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from propflow import sla

    start = datetime(2026, 11, 24, 0, 0, tzinfo=SHANGHAI)
    with unit_of_work(write=False) as session:
        due = inspection.due_rounds(session, get_policy(), start, start + timedelta(days=1))
    made = open_rounds(due, start=False)
    assert len(made) == 10
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), \
            caplog.at_level("WARNING", logger="propflow.runs"):
        assert sla.start_pending_runs() == 0
        assert runs.prefect_away()
    tried = [r for r in caplog.records if "could not start" in r.getMessage()]
    assert len(tried) == 1, [r.getMessage() for r in tried]
    with unit_of_work(write=False) as session:
        claimed = session.scalar(select(func.count()).select_from(Case).where(
            Case.run_claimed_by.is_not(None)))
    assert claimed == 0  # the one tried let its claim go; the others were never claimed
