"""Every procedure to closed on the served service: each decision lands on a suspended run,
which replays its body from the record and must take the same path it took before."""

from __future__ import annotations

import pytest

from propflow import actions
from tests.flowkit import COMPLAINT, until
from tests.servekit import decide, run_of, state

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


def closed(number: str, outcome: str) -> dict:
    until(f"{number} to close", lambda: actions.show_case(number)["status"] == "closed")
    until("its run to complete", lambda: state(run_of(number)) == "Completed")
    case = actions.show_case(number)
    assert case["outcome"] == outcome
    assert not [s["key"] for s in case["steps"] if s["status"] == "waiting"]
    return case


def told(case: dict, event: str, prefix: str = "") -> list[dict]:
    return [n for n in case["notifications"]
            if n["event"] == event and n["recipient"].startswith(prefix)]


def test_fire_resolved_before_any_update_is_reviewed_and_closed(service, demo):
    service.start()
    who = demo["by_role"]
    number = actions.report_emergency(kind="fire", community="YGHY", location="2号楼地库",
                                      reporter="保安", buildings=["1"])["number"]
    decide(number, "activate#1", who["cs_supervisor"])
    decide(number, "resolve#1", who["cs_supervisor"], summary="已扑灭", cause="电线短路")
    decide(number, "hazard_check#1", who["tech_supervisor"], findings="其他地库线路正常")
    decide(number, "incident_report#1", who["cs_supervisor"], report="地库电线短路起火，已扑灭")
    decide(number, "training_review#1", who["company_cs"], training_case=True)

    case = closed(number, "resolved")
    steps = {s["key"]: s["status"] for s in case["steps"]}
    assert steps["update#1"] == "cancelled" and "update#2" not in steps
    households = told(case, "resolved", "resident:")
    assert households, "every household of building 1 hears it is resolved"
    assert not told(case, "update")  # nobody was sent an update that was never written


def test_paid_repair_reassigned_and_reinspected_is_done(service, demo):
    service.start()
    who = demo["by_role"]
    technicians = [p["id"] for p in demo["staff"] if p["role"] == "technician"]
    number = actions.open_repair(unit="1-1-101", category="in_unit", priority="medium",
                                 reporter="业主张三", phone="13800138000",
                                 description="卫生间水龙头坏了")["number"]
    first = until("accept#1", lambda: _assignee(number, "accept#1"))
    other = next(t for t in technicians if t != first)
    decide(number, "accept#1", who["tech_supervisor"], reassign_to=other)
    decide(number, "accept#2", other, note="下午到")
    decide(number, "quote#1", who["csr"], accepted=True)  # the owner said yes by phone
    decide(number, "complete#1", other, diagnosis="阀芯老化", charge="80")
    decide(number, "owner_acceptance#1", who["csr"], accepted=False, reason="仍然滴水")
    decide(number, "reinspection#1", who["tech_supervisor"], finding="阀芯未装好", redo=True)
    decide(number, "complete#2", other, diagnosis="重新安装阀芯", charge="80")
    decide(number, "owner_acceptance#2", who["csr"], accepted=True)
    decide(number, "callback#1", who["csr"], rating=5)

    case = closed(number, "done")
    assert case["paid"] and case["assignee"] == other
    # Replays pass the first assignment again: the record shows each assignment once.
    assigned = [a["detail"].get("technician") for a in case["timeline"]
                if a["action"] == "assigned"]
    assert assigned == [first, other]
    assert [n["event"] for n in told(case, "completed", "owner:")] == ["completed"] * 2
    assert told(case, "reinspection", "owner:")


def _assignee(number: str, key: str) -> int | None:
    steps = {s["key"]: s for s in actions.show_case(number)["steps"]}
    return steps[key]["assignee"] if key in steps else None


def test_refused_complaint_reinvestigated_with_compensation_is_resolved(service, demo):
    service.start()
    who = demo["by_role"]
    opened = actions.open_complaint(**COMPLAINT)
    number = opened["number"]
    responder = actions.show_case(number)["first_responder"]
    decide(number, "acknowledge#1", responder, note="已安抚业主")
    decide(number, "investigate#1", who["cleaning"], findings="保洁排班漏了",
           proposed_resolution="加班清运")
    decide(number, "resolve#1", who["cleaning"], result="已清运")
    decide(number, "feedback#1", responder, accepted=False, reason="不满意，要求赔偿")
    # Refused: reinvestigated one level up, with a compensation the manager approves.
    decide(number, "investigate#2", who["cs_supervisor"], findings="确有延误",
           proposed_resolution="减免一个月垃圾费", compensation="200")
    decide(number, "approve_resolution#2", who["project_manager"], approved=True)
    decide(number, "resolve#2", who["cs_supervisor"], result="已减免")
    decide(number, "feedback#2", responder, accepted=True)
    decide(number, "callback#1", who["csr"], rating=4)

    case = closed(number, "resolved")
    steps = {s["key"]: s for s in case["steps"]}
    assert steps["approve_resolution#2"]["decision"]["by"] == who["project_manager"]
    assert "approve_resolution#1" not in steps  # the first plan asked no compensation
    assert [n["event"] for n in told(case, "result", "owner:")] == ["result"] * 2


def test_office_incident_class_b_is_reviewed_and_closed(service, demo):
    service.start()
    who = demo["by_role"]
    number = actions.report_emergency(kind="office_b", community="YGHY", location="管理处",
                                      reporter="前台", buildings=[])["number"]
    decide(number, "receive#1", who["csr"], contained=False)  # HR only if not contained
    decide(number, "handle#1", who["hr"], result="已安排人事面谈")
    decide(number, "resolve#1", who["cs_supervisor"], summary="员工情绪平复", cause="绩效争议")
    decide(number, "incident_report#1", who["cs_supervisor"], report="已记录")
    decide(number, "training_review#1", who["company_cs"], training_case=False)

    case = closed(number, "resolved")
    assert not told(case, "activated")  # office incidents are not broadcast to residents
