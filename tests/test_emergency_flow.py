"""The emergency procedure through Prefect: minutes, fan-out, residents told at each turn."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from propflow import actions, sla
from tests.conftest import SHANGHAI
from tests.flowkit import EmergencyRun

pytestmark = pytest.mark.usefixtures("prefect_api")


def _add_residents(n: int, building: str) -> None:
    from sqlalchemy import select

    from models.db import unit_of_work
    from models.org import Building, Resident, Unit

    with unit_of_work() as session:
        units = list(session.scalars(select(Unit).join(Building).where(Building.code == building)))
        for i in range(n):
            session.add(Resident(unit_id=units[i % len(units)].id, name=f"住户{building}-{i}",
                                 phone=f"1370000{int(building):02d}{i:02d}"))


def test_gas_leak_end_to_end(demo, clock):
    _add_residents(3, "1")  # with the demo's household in each of its 12 units: 15
    _add_residents(2, "2")  # not affected: must not hear of it
    run = EmergencyRun(demo, clock, buildings=["1"])
    assert run.step("activate#1")["role"] == "cs_supervisor"
    # Fan-out at the report, with the plan's start (§10): one acknowledgement per
    # department, answered in any order, the first before the plan is even started.
    acks = ["acknowledge-pr#1", "acknowledge-tech_supervisor#1", "acknowledge-security#1"]
    assert {run.step(k)["role"] for k in acks} == {"pr", "tech_supervisor", "security"}
    run.decide("acknowledge-security#1", "security", note="已封锁现场")
    assert not run.notices("activated")  # residents hear once the plan is started
    run.decide("activate#1", "cs_supervisor", note="已启动预案")
    acks.remove("acknowledge-security#1")
    run.step("update#1")  # the run has told the residents and waits for news
    activated = run.notices("activated")
    assert len([n for n in activated if n["recipient"].startswith("resident:")]) == 15
    assert "燃气泄漏" in activated[0]["subject"]
    for key in acks:
        run.decide(key, key.split("-", 1)[1].split("#")[0])

    run.decide("update#1", "cs_supervisor", message="燃气公司已到场，正在关阀")
    assert run.step("update#2")  # the next update falls due 30 minutes on
    update = [n for n in run.notices("update") if n["channel"] == "inbox"]
    assert len(update) == 15 and "进展通报" in update[0]["subject"]
    run.decide("resolve#1", "cs_supervisor", summary="阀门已更换", cause="阀门老化",
               losses="无")
    # Afterwards, similar hazards are checked everywhere, then the incident is recorded.
    assert run.step("hazard_check#1")["role"] == "tech_supervisor"
    run.decide("hazard_check#1", "tech_supervisor", findings="3号楼阀门同批次，已更换",
               hazards_found=True, actions="更换同批次阀门")
    assert run.step("incident_report#1")
    assert len([n for n in run.notices("resolved") if n["channel"] == "inbox"]) == 15
    run.decide("incident_report#1", "cs_supervisor", report="突发事件处理记录表……")
    run.decide("training_review#1", "company_cs", training_case=True, note="典型案例")
    assert run.finish() == "resolved"
    steps = {s["key"]: s for s in run.show()["steps"]}
    assert steps["update#2"]["status"] == "cancelled"
    assert steps["training_review#1"]["decision"]["values"]["training_case"] is True


def test_activation_lapse_climbs_to_the_manager_then_the_company(demo, clock):
    run = EmergencyRun(demo, clock)
    run.lapse("activate#1")  # 10 minutes, around the clock
    run.handled("activate#1", 1)
    run.lapse("activate#1")  # the manager has 5 more minutes
    run.handled("activate#1", 2)
    assert [e["to_role"] for e in run.escalations("activate#1")] == [
        "project_manager", "company_cs"]
    step = run.step("activate#1")
    with_times = next(s for s in actions.show_case(run.number)["steps"]
                      if s["key"] == "activate#1")
    assert step["level"] == 2 and with_times["escalations"][1]["lapsed_at"] == "2026-11-24 09:15"


def test_departments_are_called_at_the_report_and_fire_duties_include_calling_119(demo, clock):
    run = EmergencyRun(demo, clock, kind="fire", location="2号楼地库", buildings=["1"])
    security = run.step("acknowledge-security#1")
    assert run.step("activate#1")["status"] == "waiting"  # not started yet: already called
    duty = [n for n in run.notices("step_opened")
            if n["recipient"] == f"staff:{run.role('security')}"]
    assert duty and security["due_at"] == "2026-11-24 09:10"
    from tests.test_complaint_flow import _body

    assert "拨打119报警" in _body(duty[0])


def test_missed_update_escalates(demo, clock):
    run = EmergencyRun(demo, clock)
    run.decide("activate#1", "cs_supervisor")
    run.step("update#1")
    clock.advance(timedelta(minutes=31))
    assert sla.tick(start_pending=False).lapsed >= 1
    run.handled("update#1", 1)
    assert run.escalations("update#1")[0]["to_role"] == "project_manager"


def test_incident_report_is_due_in_two_working_days_across_national_day(demo, clock):
    clock.set(datetime(2026, 9, 30, 9, 0, tzinfo=SHANGHAI))  # the eve of National Day 2026
    run = EmergencyRun(demo, clock, kind="power_outage")
    run.decide("activate#1", "cs_supervisor")
    run.decide("resolve#1", "cs_supervisor", summary="已恢复供电", cause="变压器故障")
    run.decide("hazard_check#1", "tech_supervisor", findings="其他变压器正常")
    # Oct 1-7 are holidays: the two working days are Oct 8 and Oct 9.
    assert run.step("incident_report#1")["due_at"] == "2026-10-09 17:30"


def test_office_class_a_brings_the_director_and_the_manager_who_handle_media(demo, clock):
    """§10, at the management office: the 客服主任 and 管理处主任 come; media present, they
    handle it (not PR)."""
    run = EmergencyRun(demo, clock, kind="office_a", location="管理处前台", buildings=[])
    assert run.step("receive#1")["role"] == "csr"
    assert run.step("acknowledge-cs_director#1")["role"] == "cs_director"
    assert run.step("acknowledge-project_manager#1")["role"] == "project_manager"
    run.decide("receive#1", "csr", media_present=True, note="已引导至接待室")
    run.decide("acknowledge-cs_director#1", "cs_director")
    run.decide("acknowledge-project_manager#1", "project_manager")
    assert run.step("handle#1")["role"] == "project_manager"
    run.decide("handle#1", "project_manager", result="已与记者沟通")
    run.decide("resolve#1", "cs_supervisor", summary="已安抚", cause="漏水赔偿纠纷")
    run.decide("incident_report#1", "cs_supervisor", report="记录")
    run.decide("training_review#1", "company_cs", training_case=False)
    assert run.finish() == "resolved"
    assert "acknowledge-pr#1" not in [s["key"] for s in run.show()["steps"]]
    assert not run.notices("activated")  # office incidents are not broadcast to residents


def test_office_class_a_lapse_goes_to_the_director(demo, clock):
    run = EmergencyRun(demo, clock, kind="office_a", location="管理处前台", buildings=[])
    run.lapse("receive#1")
    run.handled("receive#1", 1)
    assert run.escalations("receive#1")[0]["to_role"] == "cs_director"


def test_office_class_b_the_front_desk_answers_first_and_hr_only_if_not_contained(demo, clock):
    run = EmergencyRun(demo, clock, kind="office_b", location="管理处", buildings=[])
    assert run.step("receive#1")["role"] == "csr"
    run.decide("receive#1", "csr", contained=False, note="情绪激动，无法平复")
    assert run.step("handle#1")["role"] == "hr"
    run.decide("handle#1", "hr", result="已约谈")
    assert run.step("resolve#1")


def test_office_class_b_contained_by_the_front_desk_needs_no_hr(demo, clock):
    run = EmergencyRun(demo, clock, kind="office_b", location="管理处", buildings=[])
    run.decide("receive#1", "csr", note="已平复")
    assert run.step("resolve#1")
    assert "handle#1" not in [s["key"] for s in run.show()["steps"]]


def test_office_class_c_the_manager_first_who_tells_pr(demo, clock):
    run = EmergencyRun(demo, clock, kind="office_c", location="大堂", buildings=[])
    assert run.step("acknowledge-project_manager#1")["role"] == "project_manager"
    assert "acknowledge-pr#1" not in [s["key"] for s in run.show()["steps"]]
    hold = run.notices("hold_answers")
    assert {n["recipient"] for n in hold} == {
        f"staff:{p['id']}" for p in demo["staff"] if p["role"] == "csr"}
    reported = run.notices("office_reported")  # the supervising leader is told
    assert {n["recipient"] for n in reported} == {
        f"staff:{p['id']}" for p in demo["staff"] if p["role"] == "company_cs"}
    run.decide("acknowledge-project_manager#1", "project_manager")
    run.decide("acknowledge-pr#1", "pr")
    assert run.step("resolve#1")


def test_a_level_skipped_is_told_after_the_incident(demo, clock):
    """§10: "特殊紧急情况可越级进行，但事后应向上级汇报"."""
    run = EmergencyRun(demo, clock, kind="water_outage")
    run.decide("activate#1", "project_manager", note="我在现场，直接启动")  # not escalated yet
    assert not run.notices("skipped")
    run.decide("resolve#1", "cs_supervisor", summary="已恢复供水", cause="管道爆裂")
    run.decide("hazard_check#1", "tech_supervisor", findings="同批管道已检查")
    run.step("incident_report#1")
    told = run.notices("skipped")
    assert {n["recipient"] for n in told} == {
        f"staff:{p['id']}" for p in demo["staff"] if p["role"] == "cs_supervisor"}
