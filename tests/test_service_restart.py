"""The served service: a waiting case holds no process, and survives a restart."""

from __future__ import annotations

import pytest

from propflow import actions
from tests.flowkit import until
from tests.servekit import state, waiting

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


def test_waiting_case_holds_no_process_and_survives_a_restart(service, demo):
    service.start()
    case = actions.open_repair(unit="1-1-101", category="public_area", priority="medium",
                               reporter="业主张三", phone="13800138000", description="楼道灯不亮")
    run_id = case["flow_run_id"]
    assert run_id, "the case's run was created with the case"
    step_id = until("accept#1", lambda: waiting(case["number"], "accept#1"))
    until("the run to suspend", lambda: state(run_id) == "Suspended")
    until("the run's process to exit", lambda: service.children() == [])

    service.stop()
    service.start()
    assert state(run_id) == "Suspended"

    technician = demo["by_role"]["technician"]
    actions.decide(step_id, technician, {"note": "重启后接单"})
    step_id = until("complete#1 after the restart",
                     lambda: waiting(case["number"], "complete#1"))
    actions.decide(step_id, technician, {"diagnosis": "灯管坏"})
    step_id = until("owner_acceptance#1", lambda: waiting(case["number"], "owner_acceptance#1"))
    actions.decide(step_id, demo["by_role"]["csr"], {"accepted": "true"})
    step_id = until("callback#1", lambda: waiting(case["number"], "callback#1"))
    actions.decide(step_id, demo["by_role"]["csr"], {"rating": "5"})
    until("the case to close", lambda: actions.show_case(case["number"])["status"] == "closed")
    until("the run to complete", lambda: state(run_id) == "Completed")


def test_lapse_while_suspended_escalates_inside_the_case_run(service, demo):
    from core import clock

    service.start()
    case = actions.open_repair(unit="1-1-101", category="public_area", priority="high",
                               reporter="业主张三", phone="13800138000", description="楼道漏水")
    until("accept#1", lambda: waiting(case["number"], "accept#1"))
    until("the run to suspend", lambda: state(case["flow_run_id"]) == "Suspended")
    clock.advance("11m")  # high priority: accept within 10 minutes, around the clock
    # The service's own SLA clock notices, and the run escalates.
    until("the escalation", lambda: any(
        n["event"] == "escalated" for n in actions.list_notifications(case["number"])))
    shown = actions.show_case(case["number"])
    assert shown["steps"][0]["escalations"][0]["to_role"] == "cs_supervisor"
    until("the run to suspend again", lambda: state(case["flow_run_id"]) == "Suspended")


def test_served_emergency_fans_out_across_replays(service, demo):
    """Suspended between every decision, the run replays its fan-out wait from the record."""
    service.start()
    case = actions.report_emergency(kind="fire", community="YGHY", location="2号楼地库",
                                    reporter="保安", buildings=["1"])
    number = case["number"]
    step_id = until("activate#1", lambda: waiting(number, "activate#1"))
    until("the run to suspend", lambda: state(case["flow_run_id"]) == "Suspended")
    actions.decide(step_id, demo["by_role"]["cs_supervisor"], {})
    keys = ["acknowledge-security#1", "acknowledge-tech_supervisor#1", "acknowledge-pr#1"]
    for key in reversed(keys):
        step_id = until(key, lambda key=key: waiting(number, key))
        until("the run to suspend", lambda: state(case["flow_run_id"]) == "Suspended")
        actions.decide(step_id, demo["by_role"][key.split("-", 1)[1].split("#")[0]], {})
    step_id = until("resolve#1", lambda: waiting(number, "resolve#1"))
    actions.decide(step_id, demo["by_role"]["cs_supervisor"],
                   {"summary": "已扑灭", "cause": "电线短路"})
    step_id = until("hazard_check#1", lambda: waiting(number, "hazard_check#1"))
    actions.decide(step_id, demo["by_role"]["tech_supervisor"], {"findings": "其他地库线路正常"})
    until("incident_report#1", lambda: waiting(number, "incident_report#1"))
    events = [n["event"] for n in actions.list_notifications(number)]
    assert events.count("activated") >= 2 and "resolved" in events  # summary row + household
    shown = actions.show_case(number)
    assert {s["key"]: s["status"] for s in shown["steps"]}["update#1"] == "cancelled"
