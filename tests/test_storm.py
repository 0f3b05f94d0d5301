"""Storm checks of vacant units (PROCEDURES.md §7, §10): `propflow inspections storm` makes a
vacant-units round per area at once, once per kind and hour, due a few hours on, tells the
steward, starts its run and records who ordered it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from models import directory, inspection
from models.cases import Case, Step
from models.db import unit_of_work
from models.inspection import InspectionRound
from models.outbox import AuditEvent
from propflow import actions
from propflow.cli import app
from tasks import runs
from tasks.storm import order_storm_checks
from tests.conftest import SHANGHAI
from tests.flowkit import ExistingRun

runner = CliRunner()


def storm(*args: str) -> Any:
    done = runner.invoke(app, ["inspections", "storm", *args, "--json"])
    assert done.exit_code == 0, (done.stdout, done.stderr, done.exception)
    return json.loads(done.stdout)


def refused(*args: str) -> dict[str, Any]:
    done = runner.invoke(app, ["inspections", "storm", *args, "--json"])
    assert done.exit_code == 2, (done.stdout, done.stderr)
    return dict(json.loads(done.stderr))


@pytest.fixture
def prefect_away(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(runs, "start", lambda *args, **kwargs: None)


@pytest.mark.usefixtures("prefect_away")
def test_storm_orders_a_vacant_units_round_per_area_once_an_hour(demo, clock):
    supervisor, steward = demo["by_role"]["cs_supervisor"], demo["by_role"]["steward"]
    clock.advance(timedelta(hours=6, minutes=20))  # Tuesday 15:20: no vacant-units round today
    before = storm("--community", "YGHY", "--when", "before", "--as", str(supervisor))
    assert before["made"] == 1 and before["label"] == "暴雨前"
    (made,) = before["rounds"]
    assert made["area"] == f"s{steward}" and made["made"] is True
    # Due four hours after the order (storm_within), past the patrol hours' 17:30.
    assert datetime.fromisoformat(made["ends_at"]) == datetime(2026, 11, 24, 19, 20,
                                                               tzinfo=SHANGHAI)
    case = actions.show_case(made["number"])
    assert case["procedure"] == "inspection" and case["category"] == "vacant_units"
    assert case["description"].startswith("暴雨前空置房巡查")

    # The same order again within the hour: the same round, nothing made twice.
    clock.advance(timedelta(minutes=30))
    again = storm("--community", "YGHY", "--when", "before", "--as", str(supervisor))
    assert again["made"] == 0 and [r["number"] for r in again["rounds"]] == [made["number"]]
    # After the storm is another check, even within the same hour.
    after = storm("--community", "YGHY", "--when", "after", "--as", str(supervisor))
    assert after["made"] == 1 and after["rounds"][0]["number"] != made["number"]
    with unit_of_work(write=False) as session:
        rounds = session.scalar(select(func.count()).select_from(InspectionRound).where(
            InspectionRound.plan == "vacant_units"))
        ordered = session.execute(select(AuditEvent.actor, AuditEvent.detail).where(
            AuditEvent.action == "storm_checks_ordered").order_by(AuditEvent.id)).all()
    assert rounds == 2
    assert [(actor, d["when"], d["made"]) for actor, d in ordered] == [
        (f"staff:{supervisor}", "before", [made["number"]]),
        (f"staff:{supervisor}", "before", []),
        (f"staff:{supervisor}", "after", [after["rounds"][0]["number"]])]

    # The steward is told of each, with its deadline.
    told = [n for n in actions.list_notifications(to=steward) if n["event"] == "storm_check"]
    assert len(told) == 2
    assert "暴雨前" in told[0]["subject"] and "19:20" in told[0]["subject"]

    # A scan at a vacant unit's code now checks in on the storm round.
    with unit_of_work() as session:
        current = inspection.current_round(
            session, community_id=directory.community(session, "YGHY").id,
            plan="vacant_units", at=clock.now(), staff_id=steward)
        assert current is not None and current.number == after["rounds"][0]["number"]


@pytest.mark.usefixtures("prefect_away")
@pytest.mark.parametrize(("args", "field"), [
    (["--community", "YGHY", "--when", "during", "--as", "{cs_supervisor}"], "when"),
    (["--community", "NOPE", "--as", "{cs_supervisor}"], "community"),
    (["--community", "YGHY", "--as", "{steward}"], "as"),  # a steward does not order it
    (["--community", "YGHY", "--as", "9999"], "as"),
])
def test_a_bad_order_is_refused_naming_the_field_and_makes_nothing(demo, args, field):
    args = [a.format(**{k: str(v) for k, v in demo["by_role"].items()}) for a in args]
    error = refused(*args)
    assert error["field"] == field and error["message"]
    with unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0


@pytest.mark.usefixtures("prefect_api")
def test_a_storm_rounds_run_is_started_from_the_inspection_deployment(demo, clock):
    from uuid import UUID

    from prefect.client.orchestration import get_client

    from propflow.service import deployments

    # Nothing serves it here: the run is created on the Prefect server, not executed.
    next(d for d in deployments() if d.name == "inspection").apply()
    done = storm("--community", "YGHY", "--as", str(demo["by_role"]["project_manager"]))
    assert done["started"] == 1
    number = done["rounds"][0]["number"]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(actions.show_case(number)["flow_run_id"]))
    assert run.name == number and run.parameters["number"] == number


@pytest.mark.usefixtures("prefect_api", "prefect_away")
def test_a_storm_round_is_due_by_its_deadline_lapses_to_the_supervisor_and_finds_defects(
        demo, clock):
    supervisor, steward = demo["by_role"]["cs_supervisor"], demo["by_role"]["steward"]
    # Not through CliRunner: its captured streams, closed, would be Prefect's log's in the run.
    done = order_storm_checks("YGHY", "after", supervisor)
    run = ExistingRun(demo, clock, done["rounds"][0]["number"])
    step = run.step("checkpoint#units")
    with unit_of_work(write=False) as session:
        row = session.get(Step, step["id"])
        assert row.due_at == datetime(2026, 11, 24, 13, 0, tzinfo=SHANGHAI)  # 09:00 + 4 h
        assert row.context["duty"].startswith("暴雨后检查 空置房")
        assert row.assignee_id == steward
    run.lapse("checkpoint#units")
    run.handled("checkpoint#units", 1)
    escalated = [n for n in run.show()["notifications"] if n["event"] == "escalated"]
    assert [n["recipient"] for n in escalated] == [f"staff:{supervisor}"]
    run.decide("checkpoint#units", "steward", finding="vacant_defect", unit="3-1-201",
               not_ok="门窗关闭", note="暴雨后 3-1-201 北窗未关，地面积水")
    assert run.finish() == "done"
    (warranty,) = [n for n in run.show()["notifications"] if n["event"] == "vacant_defect"]
    assert "3-1-201" in warranty["subject"]


@pytest.mark.usefixtures("prefect_away")
def test_the_supervisor_orders_them_from_the_sheets_page(demo, clock):
    from tests.webpages import client_as

    supervisor, steward = demo["by_role"]["cs_supervisor"], demo["by_role"]["steward"]
    client, csrf = client_as(supervisor)
    page = client.get("/inspections/sheets")
    assert page.status_code == 200 and 'data-testid="storm-form" data-community="YGHY"' \
        in page.text
    form = {"community": "YGHY", "when": "after"}
    assert client.post("/inspections/storm", data=form).status_code == 403  # no csrf
    done = client.post("/inspections/storm", data=form | {"csrf": csrf})
    assert done.status_code == 200 and 'data-made="1"' in done.text and "暴雨后" in done.text
    with unit_of_work(write=False) as session:
        (detail,) = session.scalars(select(AuditEvent.detail).where(
            AuditEvent.action == "storm_checks_ordered")).all()
        (actor,) = session.scalars(select(AuditEvent.actor).where(
            AuditEvent.action == "storm_checks_ordered")).all()
    assert (actor, detail["channel"], detail["when"]) == (f"staff:{supervisor}", "web", "after")

    stewards, steward_csrf = client_as(steward)
    page = stewards.get("/inspections/sheets")  # their sheets, and no button to order
    assert page.status_code == 200 and 'data-testid="sheet-pdf"' in page.text
    assert 'data-testid="storm' not in page.text
    refused_ = stewards.post("/inspections/storm", data=form | {"csrf": steward_csrf})
    assert refused_.status_code == 403 and 'data-field="as"' in refused_.text
    assert "不是阳光花园的客服主管" in refused_.text
