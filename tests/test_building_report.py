"""The building report 楼宇综合情况表 (PROCEDURES.md §7, on the 28th): compiled from the month's
rounds, put to the 客服主管, sent back to the stewards and compiled again, approved and
recorded; a lapse escalating; the schedule's run opening one case per community."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from core.errors import PropflowError
from models.cases import Step
from models.db import unit_of_work
from models.outbox import AuditEvent
from propflow import actions, deployments
from tasks import runs
from tests.flowkit import CaseRun, until


class ReportRun(CaseRun):
    procedure = "building_report"


class RoundRun(CaseRun):
    procedure = "inspection"


def context(run: CaseRun, key: str) -> dict:
    with unit_of_work(write=False) as session:
        return dict(session.get(Step, run.step(key)["id"]).context)


def test_the_schedule_is_the_28th_at_nine_in_shanghai():
    found = {d["name"]: d for d in yaml.safe_load(deployments.render())["deployments"]}
    assert found["building_report"]["schedules"] == [{"cron": "0 9 28 * *",
                                                      "timezone": "Asia/Shanghai"}]


def test_one_report_case_per_community_and_month(demo, clock):
    first = actions.open_case("building_report", {"community": "YGHY", "month": "2026-11"},
                              start_run=False)
    assert first["number"].startswith("LY-")
    with pytest.raises(PropflowError) as caught:
        actions.open_case("building_report", {"community": "YGHY", "month": "2026-11"},
                          start_run=False)
    assert caught.value.field == "month" and first["number"] in caught.value.message
    with pytest.raises(PropflowError) as caught:
        actions.open_case("building_report", {"community": "YGHY", "month": "2026-13"},
                          start_run=False)
    assert caught.value.field == "month"


@pytest.mark.usefixtures("prefect_api")
def test_the_report_is_compiled_from_the_rounds_sent_back_compiled_again_and_approved(
        demo, clock):
    # November's rounds: public facilities done, its lobby's broken light a repair; the
    # shops' round of the same day never done.
    done = RoundRun(demo, clock, plan="public_facilities")
    done.decide("checkpoint#lobby", "steward", finding="broken_facility", unit="1-1-101",
                note="大堂两盏灯不亮")
    done.decide("checkpoint#fire_exit", "steward")
    done.decide("checkpoint#rooftop", "steward")
    assert done.finish() == "done"
    (link,) = until("the repair linked", lambda: done.show()["links"])
    shops = actions.open_case("inspection", {"plan": "shops", "community": "YGHY"},
                              start_run=False)["number"]

    run = ReportRun(demo, clock, month="2026-11")
    first = context(run, "approve#1")
    assert run.step("approve#1")["role"] == "cs_supervisor"
    page = Path(first["report"]).read_text(encoding="utf-8")
    assert "2026-11 楼宇综合情况表" in page
    assert "<tr><td>公共设施巡查</td><td class=\"n\">1</td><td class=\"n\">1</td>" \
           "<td class=\"n\">1</td></tr>" in page
    assert "<tr><td>商铺巡查</td><td class=\"n\">1</td><td class=\"n\">0</td>" \
           "<td class=\"n\">0</td></tr>" in page
    assert f"报修 {link['case']}（处理中）" in page and "设施损坏（转报修）" in page
    assert f"巡查 {shops}（商铺巡查）未完成" in page  # open items
    assert "巡查 2 轮，完成 1 轮，按时 1 轮；发现 1 项；未结 2 项" in first["duty"]

    run.decide("approve#1", "cs_supervisor", approved=False, reason="商铺巡查未完成，请补查")
    revise = run.step("revise#1")
    assert revise["role"] == "steward" and "商铺巡查未完成" in context(run, "revise#1")["duty"]
    run.decide("revise#1", "steward", result="商铺已补查")
    second = context(run, "approve#2")
    assert second["report"] != first["report"] and Path(first["report"]).exists()
    run.decide("approve#2", "cs_supervisor", approved=True)
    assert run.finish() == "approved"
    case = run.show()
    assert (case["status"], case["outcome"]) == ("closed", "approved")
    assert case["details"]["approved"]["version"] == 2
    with unit_of_work(write=False) as session:
        approved = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "building_report_approved")).all()
    assert [(a.actor, a.detail["report"]) for a in approved] == [
        (f"staff:{demo['by_role']['cs_supervisor']}", second["report"])]


@pytest.mark.usefixtures("prefect_api")
def test_an_approval_not_given_in_time_goes_to_the_project_manager(demo, clock):
    run = ReportRun(demo, clock, month="2026-11")
    run.lapse("approve#1")
    run.handled("approve#1", 1)
    escalated = [n for n in run.show()["notifications"] if n["event"] == "escalated"]
    assert [n["recipient"] for n in escalated] == [f"staff:{demo['by_role']['project_manager']}"]
    run.decide("approve#1", "project_manager", approved=True)
    assert run.finish() == "approved"


@pytest.mark.usefixtures("prefect_api")
def test_the_schedules_run_opens_a_case_per_community_once(demo, clock, monkeypatch):
    from flows.building_report import building_report

    monkeypatch.setattr(runs, "start", lambda *args, **kwargs: None)  # nothing serves them
    clock.advance(timedelta(days=4))  # Saturday the 28th
    assert building_report() == "opened 1"
    assert building_report() == "opened 0"
    (case,) = [c for c in actions.list_cases() if c["number"].startswith("LY-")]
    assert actions.show_case(case["number"])["details"]["month"] == "2026-11"


@pytest.mark.slow
def test_a_report_served_is_sent_back_and_approved_by_replays(service, demo):
    """Served: each decision lands on a suspended run that replays from the record."""
    from tests.servekit import decide, run_of, state

    service.start()
    who = demo["by_role"]
    number = actions.open_case("building_report", {"community": "YGHY",
                                                   "month": "2026-11"})["number"]
    decide(number, "approve#1", who["cs_supervisor"], approved=False, reason="请补充商铺巡查")
    decide(number, "revise#1", who["steward"], result="已补充")
    decide(number, "approve#2", who["cs_supervisor"], approved=True)
    until("closed", lambda: actions.show_case(number)["status"] == "closed")
    until("its run to complete", lambda: state(run_of(number) or "") == "Completed")
    case = actions.show_case(number)
    assert case["outcome"] == "approved" and case["details"]["approved"]["version"] == 2
    with unit_of_work(write=False) as session:
        compiled = session.scalars(select(AuditEvent.detail).where(
            AuditEvent.action == "building_report_compiled")).all()
    assert sorted(c["version"] for c in compiled) == [1, 2]  # replays compiled none again
