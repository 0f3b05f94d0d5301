"""Reception day 接访日: the calendar, the notice a week before, a matter signed off to done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from core.clock import now
from core.errors import PropflowError
from models.cases import Step
from models.db import unit_of_work
from models.outbox import Notification
from propflow import actions, deployments
from propflow.cli import app
from tests.conftest import SHANGHAI
from tests.flowkit import CaseRun

POSTPONED = {"2026-01-04": "2026-01-02", "2026-05-06": "2026-05-01", "2026-10-08": "2026-10-02"}


def test_2026_reception_days_are_first_fridays_or_the_next_working_day():
    days = actions.reception_days(2026)
    assert [d["day"] for d in days] == [
        "2026-01-04", "2026-02-06", "2026-03-06", "2026-04-03", "2026-05-06", "2026-06-05",
        "2026-07-03", "2026-08-07", "2026-09-04", "2026-10-08", "2026-11-06", "2026-12-04"]
    assert {d["day"]: d["scheduled"] for d in days if d["postponed"]} == POSTPONED
    # 2026-01-04 is a Sunday: a make-up working day after New Year, so it is the next one.
    assert days[0]["weekday"] == "星期日"
    assert all((d["start"], d["end"]) == ("10:00", "12:00") for d in days)


def test_cli_lists_the_days_with_the_postponements(db):
    shown = CliRunner().invoke(app, ["reception", "days", "--year", "2026"])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert len(lines) == 12
    assert lines[4].startswith("2026-05-06 星期三 10:00-12:00") and "原定 2026-05-01" in lines[4]
    assert "顺延" not in lines[1]


def test_the_schedule_is_in_prefect_yaml_in_shanghai_time():
    found = yaml.safe_load(deployments.render())
    by_name = {d["name"]: d for d in found["deployments"]}
    assert by_name["reception"]["schedules"] == [{"cron": "0 9 * * *",
                                                  "timezone": "Asia/Shanghai"}]
    assert "schedules" not in by_name["repair"]


def test_residents_are_told_a_week_before_once(demo, clock):
    # Tuesday 11-24: the next reception day, Friday 12-04, is ten days off.
    assert actions.announce_reception_days() == []
    clock.advance(timedelta(days=3))  # Friday 11-27: a week before
    told = actions.announce_reception_days()
    assert [(t["community"], t["day"]) for t in told][0] == ("YGHY", "2026-12-04")
    assert actions.announce_reception_days() == []  # the schedule runs daily: once is enough
    rows = actions.list_notifications()
    residents = [n for n in rows if n["recipient"].startswith("resident:")]
    assert residents and len(residents) == int(told[0]["households"])
    assert "2026-12-04 10:00-12:00" in residents[0]["subject"]
    manager = demo["by_role"]["project_manager"]
    assert any(n["event"] == "reception_day" for n in actions.list_notifications(to=manager))


@pytest.mark.parametrize(("fields", "field"), [
    ({"day": "2026-12-05"}, "day"),  # a Saturday, not a reception day
    ({"day": "2026-11-06"}, "day"),  # already past
    ({"department": "kitchen"}, "department"),
    ({"phone": "12345"}, "phone"),
])
def test_a_bad_matter_is_refused_naming_the_field(demo, clock, fields, field):
    matter = {"community": "YGHY", "visitor": "王五", "phone": "13900139000",
              "matter": "东门照明不足", "department": "engineering"} | fields
    with pytest.raises(PropflowError) as caught:
        actions.open_case("reception", matter, start_run=False)
    assert caught.value.field == field


def test_a_matter_is_for_the_next_reception_day(demo, clock):
    opened = actions.open_case("reception", {
        "community": "YGHY", "visitor": "王五", "phone": "13900139000",
        "matter": "东门照明不足", "department": "security", "day": "2027-02-05"},
        start_run=False)
    assert opened["number"].startswith("JF-20261124-")
    case = actions.show_case(opened["number"])
    assert any(n["event"] == "received" for n in case["notifications"])


class MatterRun(CaseRun):
    procedure = "reception"


@pytest.mark.usefixtures("prefect_api")
def test_a_matter_signed_off_accepted_followed_up_until_done_and_closed(demo, clock):
    run = MatterRun(demo, clock, department="engineering")
    run.decide("signoff_cs#1", "cs_supervisor", approved=True)
    run.decide("signoff_department#1", "tech_supervisor", approved=True)  # engineering
    run.decide("signoff_supervisor#1", "cs_director", approved=True)
    run.decide("accept#1", "project_manager", accepted=True, opinion="加装两盏路灯",
               department="engineering", deadline="2026-11-27")
    handle = run.step("handle#1")
    assert handle["role"] == "tech_supervisor"
    with unit_of_work() as session:
        due = session.get(Step, handle["id"]).due_at
    assert due == datetime(2026, 11, 27, 17, 30, tzinfo=SHANGHAI)  # the deadline's end of day
    run.decide("handle#1", "tech_supervisor", result="已采购灯具", done=False)
    run.decide("follow_up#1", "cs_supervisor", done=False, new_deadline="2026-12-02")
    run.decide("handle#2", "tech_supervisor", result="两盏路灯已安装", done=True)
    run.decide("follow_up#2", "cs_supervisor", done=True, note="现场核实")
    run.decide("satisfaction#1", "csr", rating=5)
    assert run.finish() == "done"
    case = run.show()
    assert case["status"] == "closed"
    to_visitor = [n["event"] for n in case["notifications"] if n["recipient"].startswith("owner:")]
    assert to_visitor == ["received", "accepted", "result", "result", "closed"]
    assert now() < datetime(2026, 11, 27, tzinfo=SHANGHAI)


@pytest.mark.usefixtures("prefect_api")
def test_a_refused_signoff_declines_the_matter_and_tells_the_visitor(demo, clock):
    run = MatterRun(demo, clock)
    run.decide("signoff_cs#1", "cs_supervisor", approved=True)
    run.decide("signoff_department#1", "tech_supervisor", approved=False,
               reason="属开发商保修范围，已转地产保修中心")
    assert run.finish() == "declined"
    case = run.show()
    assert "signoff_supervisor#1" not in {s["key"] for s in case["steps"]}
    with unit_of_work() as session:
        declined = session.scalars(select(Notification.body).where(
            Notification.event == "declined")).all()
    assert len(declined) == 1 and "地产保修中心" in declined[0]


@pytest.mark.usefixtures("prefect_api")
def test_the_scheduled_run_with_no_case_tells_residents(demo, clock):
    from flows.reception import reception

    clock.advance(timedelta(days=3))
    assert reception() == "announced 1"
    assert reception() == "announced 0"
    with unit_of_work() as session:
        assert session.scalars(select(Step)).first() is None  # no case, no step


@pytest.mark.usefixtures("prefect_api")
def test_serve_creates_the_schedules_next_run_once_as_prefects_scheduler_cannot():
    from uuid import UUID

    from prefect.client.orchestration import get_client

    from propflow import schedules, service

    deployment = next(d for d in service.deployments() if d.name == "reception")
    deployment_id = deployment.apply(_sync=True)  # a browser test may leave a loop running
    # 11:00 in Shanghai: that day's 09:00 is past. Years ahead, so that the run is never due
    # (a run already due is taken by any executor serving the deployment, and completes).
    at = datetime(2030, 11, 30, 3, 0, tzinfo=UTC)

    def reception_runs() -> list[str]:
        """Its runs of those made: other tests' scheduled deployments may be on the server."""
        made = schedules.ensure_next_runs(at)
        with get_client(sync_client=True) as client:
            return [i for i in made if client.read_flow_run(UUID(i)).deployment_id
                    == deployment_id]
    first = reception_runs()
    assert len(first) == 1
    assert reception_runs() == first  # replicas and later passes: the same run
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(first[0]))
    assert run.state is not None and run.state.is_scheduled()
    assert run.expected_start_time == datetime(2030, 12, 1, 9, 0, tzinfo=SHANGHAI)


@pytest.mark.slow
def test_a_matter_served_is_signed_off_and_closed_by_replays(service, demo):
    """Served: each decision lands on a suspended run that replays from the record."""
    from tests.flowkit import example, until
    from tests.servekit import decide as decide_served
    from tests.servekit import run_of, state

    service.start()
    who = demo["by_role"]
    number = actions.open_case("reception", example("reception")
                               | {"department": "engineering"})["number"]

    def decide(key: str, role: str, **values: object) -> None:
        decide_served(number, key, who[role], **values)

    decide("signoff_cs#1", "cs_supervisor", approved=True)
    decide("signoff_department#1", "tech_supervisor", approved=True)
    decide("signoff_supervisor#1", "cs_director", approved=True)
    deadline = (now().astimezone(SHANGHAI) + timedelta(days=3)).strftime("%Y-%m-%d")
    decide("accept#1", "project_manager", accepted=True, opinion="加装两盏路灯",
           department="engineering", deadline=deadline)
    decide("handle#1", "tech_supervisor", result="两盏路灯已安装", done=True)
    decide("follow_up#1", "cs_supervisor", done=True, note="现场核实")
    decide("satisfaction#1", "csr", rating=5)
    until("closed", lambda: actions.show_case(number)["status"] == "closed")
    until("its run to complete", lambda: state(run_of(number) or "") == "Completed")
    assert actions.show_case(number)["outcome"] == "done"
