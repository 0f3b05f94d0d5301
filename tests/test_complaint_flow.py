"""The complaint procedure through Prefect: refusals, reopenings, compensation, links."""

from __future__ import annotations

import pytest

from propflow import actions
from tests.flowkit import ComplaintRun, RepairRun

pytestmark = pytest.mark.usefixtures("prefect_api")


def _staff(demo: dict, role: str, nth: int = 0) -> int:
    return [p["id"] for p in demo["staff"] if p["role"] == role][nth]


def _to_complainant(run) -> list[dict]:  # type: ignore[no-untyped-def]
    return [n for n in run.show()["notifications"] if n["recipient"].startswith("owner:")]


def test_refusal_reopens_one_level_up_and_compensation_is_approved(demo, clock):
    responder = _staff(demo, "csr", 1)  # 李娜 took the call: she owns it to the end
    run = ComplaintRun(demo, clock, received_by=responder)
    assert run.step("acknowledge#1")["assignee"] == responder
    run.decide("acknowledge#1", responder, note="已安抚业主")
    assert run.step("investigate#1")["role"] == "cleaning"
    run.decide("investigate#1", "cleaning", findings="保洁排班漏了", proposed_resolution="加班清运")
    run.decide("resolve#1", "cleaning", result="已清运")
    run.decide("feedback#1", responder, accepted=False, reason="不满意，要求赔偿")

    assert run.step("investigate#2")["role"] == "cs_supervisor"
    run.decide("investigate#2", "cs_supervisor", findings="确有延误",
               proposed_resolution="减免一个月垃圾费", compensation="200")
    run.decide("approve_resolution#2", "project_manager", approved=True)
    run.decide("resolve#2", "cs_supervisor", result="已减免")
    run.decide("feedback#2", responder, accepted=True)
    run.decide("callback#1", "csr", rating=4)
    assert run.finish() == "resolved"

    case = run.show()
    assert case["status"] == "closed"
    messages = _to_complainant(run)
    assert messages and all("李娜" in (m["subject"] + _body(m)) for m in messages)
    assert any("200" in _body(m) for m in messages if m["event"] == "result")


def _body(notification: dict) -> str:
    from models.db import unit_of_work
    from models.outbox import Notification

    with unit_of_work() as session:
        return session.get(Notification, notification["id"]).body


def test_refused_compensation_goes_back_to_the_department(demo, clock):
    responder = _staff(demo, "csr")
    run = ComplaintRun(demo, clock, received_by=responder)
    run.decide("acknowledge#1", responder)
    run.decide("investigate#1", "cleaning", findings="门岗态度差",
               proposed_resolution="赔偿500元", compensation="500")
    run.decide("approve_resolution#1", "project_manager", approved=False, reason="金额过高")
    assert run.step("investigate#2")["role"] == "cleaning"
    run.decide("investigate#2", "cleaning", findings="门岗态度差", proposed_resolution="书面道歉")
    run.decide("resolve#2", "cleaning", result="已道歉")
    run.decide("feedback#2", responder, accepted=True)
    run.decide("callback#1", "csr", reached=False)
    run.decide("phone_callback#1", "csr", rating=3)
    assert run.finish() == "resolved"
    keys = [s["key"] for s in run.show()["steps"]]
    assert "approve_resolution#2" not in keys  # no compensation asked the second time


def test_second_refusal_goes_to_the_project_manager(demo, clock):
    responder = _staff(demo, "csr")
    run = ComplaintRun(demo, clock, received_by=responder, category="parking")
    run.decide("acknowledge#1", responder)
    for round_, role in ((1, "security"), (2, "cs_supervisor")):
        assert run.step(f"investigate#{round_}")["role"] == role
        run.decide(f"investigate#{round_}", role, findings="车位被占", proposed_resolution="贴条")
        run.decide(f"resolve#{round_}", role, result="已处理")
        run.decide(f"feedback#{round_}", responder, accepted=False, reason="还是被占")
    assert run.step("investigate#3")["role"] == "project_manager"


def test_the_manager_who_proposed_a_compensation_may_not_approve_it(demo, clock):
    """Finding 4: the manager investigates after the second refusal; their own compensation
    goes one level up (公司客服中心) once the approval window lapses, never to themselves."""
    from core.errors import Forbidden

    responder = _staff(demo, "csr")
    run = ComplaintRun(demo, clock, received_by=responder, category="parking")
    run.decide("acknowledge#1", responder)
    for round_, role in ((1, "security"), (2, "cs_supervisor")):
        run.decide(f"investigate#{round_}", role, findings="车位被占", proposed_resolution="贴条")
        run.decide(f"resolve#{round_}", role, result="已处理")
        run.decide(f"feedback#{round_}", responder, accepted=False, reason="还是被占")
    run.decide("investigate#3", "project_manager", findings="车位被长期占用",
               proposed_resolution="免一个月停车费", compensation="300")
    approval = run.step("approve_resolution#3")
    with pytest.raises(Forbidden, match="规则（proposer）"):
        actions.decide(approval["id"], run.role("project_manager"), {"approved": True})
    run.lapse("approve_resolution#3")
    run.handled("approve_resolution#3", 1)
    assert run.escalations("approve_resolution#3")[-1]["to_role"] == "company_cs"
    run.decide("approve_resolution#3", "company_cs", approved=True)
    assert run.step("resolve#3")["role"] == "project_manager"


def test_lapses_escalate_and_copy_the_first_responder(demo, clock):
    responder = _staff(demo, "csr", 1)
    run = ComplaintRun(demo, clock, received_by=responder)
    run.decide("acknowledge#1", responder)
    run.lapse("investigate#1")
    run.handled("investigate#1", 1)
    escalated = [n for n in run.show()["notifications"] if n["event"] == "escalated"]
    told = {n["recipient"] for n in escalated}
    assert told == {f"staff:{_staff(demo, 'cs_supervisor')}", f"staff:{responder}"}


def test_complaint_about_a_repair_is_linked_both_ways(demo, clock):
    repair = actions.open_repair(start_run=False, unit="1-1-101", category="public_area",
                                 priority="low", reporter="业主张三", phone="13800138000",
                                 description="路灯坏")
    complaint = actions.open_complaint(start_run=False, unit="1-1-101", complainant="业主张三",
                                       phone="13800138000", category="repair",
                                       description="修了三次还坏", repair=repair["number"])
    shown = actions.show_case(complaint["number"])
    assert shown["links"] == [{"relation": "complaint_about", "case": repair["number"]}]
    back = actions.show_case(repair["number"])
    assert back["links"] == [{"relation": "complaint_about (from)", "case": complaint["number"]}]
    assert any(t["action"] == "linked" for t in back["timeline"])


def test_low_callback_rating_opens_a_linked_complaint(demo, clock):
    run = RepairRun(demo, clock)
    run.decide("accept#1", "technician")
    run.decide("complete#1", "technician", diagnosis="灯管坏")
    run.decide("owner_acceptance#1", "csr", accepted=True)
    run.decide("callback#1", "csr", rating=1, comment="师傅迟到两小时")
    assert run.finish() == "done"
    links = run.show()["links"]
    assert len(links) == 1 and links[0]["case"].startswith("TS-")
    complaint = actions.show_case(links[0]["case"])
    assert "师傅迟到两小时" in complaint["description"]
    assert complaint["first_responder"] == run.role("csr")
    assert complaint["category"] == "repair"


def test_the_complainant_is_told_the_reply_time_and_the_progress(demo, clock):
    """§10: "应告知回复时间" at acknowledgement; "告知用户进展状况和后续处理方案" when it
    cannot be solved at once."""
    responder = _staff(demo, "csr")
    run = ComplaintRun(demo, clock, received_by=responder)
    run.decide("acknowledge#1", responder, note="已安抚业主")
    run.step("investigate#1")
    [acknowledged] = [m for m in _to_complainant(run) if m["event"] == "acknowledged"]
    assert "2026-11-27 09:00 前给您答复" in _body(acknowledged)  # 72 h after acknowledging
    run.decide("investigate#1", "cleaning", findings="保洁排班漏了", proposed_resolution="加班清运")
    run.step("resolve#1")
    [progress] = [m for m in _to_complainant(run) if m["event"] == "progress"]
    assert "加班清运" in _body(progress) and "2026-11-27 09:00" in _body(progress)
