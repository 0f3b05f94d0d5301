"""The repair procedure through Prefect, every branch, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.flowkit import RepairRun, until

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_happy_path_closes_with_rating(demo, clock):
    run = RepairRun(demo, clock)
    run.decide("accept#1", "technician", eta="2026-11-24T10:00:00+08:00", note="马上到")
    run.decide("complete#1", "technician", diagnosis="灯管老化", work_done="更换灯管")
    run.decide("owner_acceptance#1", "csr", accepted=True)
    run.decide("callback#1", "csr", rating=5, comment="很快")
    assert run.finish() == "done"
    case = run.show()
    assert case["status"] == "closed" and case["outcome"] == "done"
    assert [s["key"] for s in case["steps"]] == [
        "accept#1", "complete#1", "owner_acceptance#1", "callback#1"]
    owner_subjects = [n["subject"] for n in case["notifications"]
                      if n["recipient"].startswith("owner:")]
    assert any("已受理" in s for s in owner_subjects)
    assert any("已关闭" in s for s in owner_subjects)


def test_disputed_result_is_reinspected_and_redone(demo, clock):
    run = RepairRun(demo, clock)
    run.decide("accept#1", "technician")
    run.decide("complete#1", "technician", diagnosis="灯座松动", work_done="紧固")
    run.decide("owner_acceptance#1", "csr", accepted=False, reason="还是闪")
    step = run.step("reinspection#1")
    assert step["role"] == "tech_supervisor"
    run.decide("reinspection#1", "tech_supervisor", finding="镇流器坏", redo=True)
    run.decide("complete#2", "technician", diagnosis="镇流器损坏", work_done="更换镇流器")
    run.decide("owner_acceptance#2", "csr", accepted=True)
    run.decide("callback#1", "csr", rating=4)
    assert run.finish() == "done"
    subjects = [n["subject"] for n in run.show()["notifications"]]
    assert any("复检" in s for s in subjects)


def test_the_rating_is_asked_with_the_completion_notice_and_due_24_h_after_it(demo, clock):
    """§10: the rating request goes with the completion notice; its 24 h run from completion,
    however long the owner takes to accept the work."""
    from datetime import timedelta

    run = RepairRun(demo, clock)
    run.decide("accept#1", "technician")
    clock.advance(timedelta(hours=2))
    run.decide("complete#1", "technician", diagnosis="灯管老化", work_done="更换灯管")
    run.step("owner_acceptance#1")
    [completed] = [n for n in run.show()["notifications"]
                   if n["recipient"].startswith("owner:") and n["event"] == "completed"]
    assert "评价" in completed["subject"]
    from tests.test_complaint_flow import _body

    assert "2026-11-25 11:00 前为本次服务评分" in _body(completed)
    clock.advance(timedelta(hours=5))
    run.decide("owner_acceptance#1", "csr", accepted=True)
    assert run.step("callback#1")["due_at"] == "2026-11-25 11:00"  # not 16:00
    run.decide("callback#1", "csr", rating=5, comment="很快")
    assert run.finish() == "done"


def test_paid_repair_refused_quote_closes_without_work(demo, clock):
    # Building 1 is out of warranty and in-unit work is chargeable.
    run = RepairRun(demo, clock, category="in_unit", description="卫生间水龙头滴水")
    assert run.case["paid"] is True
    run.decide("accept#1", "technician")
    run.decide("quote#1", "csr", accepted=False, reason="太贵")
    assert run.finish() == "quote_refused"
    case = run.show()
    assert case["outcome"] == "quote_refused"
    assert "complete#1" not in [s["key"] for s in case["steps"]]


def test_supervisor_reassigns_to_another_technician(demo, clock):
    run = RepairRun(demo, clock)
    first = run.step("accept#1")["assignee"]
    other = next(p["id"] for p in demo["staff"]
                 if p["role"] == "technician" and p["id"] != first)
    run.decide("accept#1", "tech_supervisor", reassign_to=other)
    second = run.step("accept#2")
    assert second["assignee"] == other
    run.decide("accept#2", other)
    run.decide("complete#1", other, diagnosis="线路老化")
    run.decide("owner_acceptance#1", "csr", accepted=True)
    run.decide("callback#1", "csr", rating=5)
    assert run.finish() == "done"
    assert run.show()["assignee"] == other


def test_complex_category_goes_to_supervisor_dispatch(demo, clock):
    run = RepairRun(demo, clock, category="equipment", description="水泵异响")
    assert run.step("dispatch#1")["role"] == "tech_supervisor"
    elevator_tech = next(p["id"] for p in demo["staff"] if "elevator" in p["skills"]
                         and p["role"] == "technician")
    run.decide("dispatch#1", "tech_supervisor", technician=elevator_tech)
    assert run.step("accept#1")["assignee"] == elevator_tech


def test_lapses_climb_the_chain_and_show_in_the_run(demo, clock):
    run = RepairRun(demo, clock)
    for level, role in enumerate(["cs_supervisor", "project_manager", "company_cs"], start=1):
        run.lapse("accept#1")
        run.handled("accept#1", level)
        assert run.escalations("accept#1")[-1]["to_role"] == role
        told = [n for n in run.show()["notifications"] if n["event"] == "escalated"]
        assert told[-1]["recipient"] == f"staff:{run.role(role)}"
    step = run.step("accept#1")
    assert step["level"] == 3 and step["breached"]
    # Past the top of the chain nothing more is sent: the breach stays recorded.
    from propflow import sla

    run.clock.advance(__import__("datetime").timedelta(days=3))
    assert sla.tick(start_pending=False).lapsed == 0
    # Each escalation is an `escalate` task run of the case's own flow run.
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    def escalations() -> list[str]:
        with get_client(sync_client=True) as client:  # 3.8.8 wants an explicit sort and limit
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(run.flow_run_id())])),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=200)
        return sorted(t.name for t in task_runs if t.name.startswith("escalate"))
    # The server records task runs from their events, in batches a second apart at most.
    until("the third escalation's task run", lambda: len(escalations()) >= 3)
    assert escalations() == ["escalate level 1", "escalate level 2", "escalate level 3"]
    # Someone above in the chain may still decide it.
    run.decide("accept#1", "project_manager", note="已协调")
    assert run.step("complete#1")


def test_callback_not_reached_needs_a_phone_callback(demo, clock):
    run = RepairRun(demo, clock)
    run.decide("accept#1", "technician")
    run.decide("complete#1", "technician", diagnosis="开关坏")
    run.decide("owner_acceptance#1", "csr", accepted=True)
    run.decide("callback#1", "csr", reached=False)
    assert run.step("phone_callback#1")["role"] == "csr"
    run.decide("phone_callback#1", "csr", rating=3, comment="电话回访")
    assert run.finish() == "done"


def test_callback_window_lapsing_falls_to_phone_callback(demo, clock):
    run = RepairRun(demo, clock)
    run.decide("accept#1", "technician")
    run.decide("complete#1", "technician", diagnosis="开关坏")
    run.decide("owner_acceptance#1", "csr", accepted=True)
    run.lapse("callback#1")
    run.decide("phone_callback#1", "csr", rating=4)
    assert run.finish() == "done"
    steps = {s["key"]: s for s in run.show()["steps"]}
    assert steps["callback#1"]["status"] == "lapsed"
    assert steps["callback#1"]["escalations"] == []


def test_decision_made_while_prefect_is_away_is_delivered_later(demo, clock, monkeypatch):
    from propflow import actions, sla
    from tasks import runs

    run = RepairRun(demo, clock)
    step = run.step("accept#1")
    real_wake = runs.wake
    monkeypatch.setattr(runs, "wake", lambda run_id: False)
    result = actions.decide(step["id"], run.role("technician"), {})
    assert result["delivered"] is False
    assert run.paused()
    monkeypatch.setattr(runs, "wake", real_wake)
    assert sla.redeliver() == 1
    assert run.step("complete#1")
    assert sla.redeliver() == 0


def test_decision_typed_into_the_prefect_ui_is_recorded_as_override(demo, clock):
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    run = RepairRun(demo, clock)
    run.decide("accept#1", "technician")
    run.step("complete#1")
    resume_flow_run(UUID(run.flow_run_id()), run_input={
        "as_staff": run.role("technician"), "diagnosis": "插座烧坏", "signal": "ui"})
    run.step("owner_acceptance#1")
    complete = next(s for s in run.show()["steps"] if s["key"] == "complete#1")
    assert complete["decision"]["channel"] == "prefect_ui"
    assert complete["decision"]["override"] is True
    assert complete["decision"]["values"]["diagnosis"] == "插座烧坏"


def test_waiting_step_shows_its_form_under_a_summary_in_the_prefect_ui(demo, clock):
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.input import keyset_from_paused_state

    run = RepairRun(demo, clock)
    step = run.step("accept#1")
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run.flow_run_id())).state
        keyset = keyset_from_paused_state(state)
        summary = client.read_flow_run_input(UUID(run.flow_run_id()), keyset["description"])
        schema = client.read_flow_run_input(UUID(run.flow_run_id()), keyset["schema"])
    assert run.number in summary and "接单" in summary and "楼道灯不亮" in summary
    assert f"propflow steps decide {step['id']}" in summary
    for field in ("as_staff", "eta", "note", "reassign_to"):
        assert f'"{field}"' in schema
