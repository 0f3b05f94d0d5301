"""Who may decide a step (issue 6 finding 4, DESIGN.md "Who may decide"): the assignee, or
the step's role when unassigned; a stand-in the policy names; a level of the chain only once
the step has escalated to it; never whoever proposed what an approval approves. Staff named
in a decision are active staff of the case's community with the role needed. Every refusal
names its rule. Fast tier: cases opened without a run, steps opened directly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.errors import PropflowError
from models import directory, steps
from models.cases import Case, Escalation, Step
from models.db import unit_of_work
from models.org import Community, Staff, StaffRole
from models.outbox import AuditEvent
from propflow import actions, sla
from tests.test_bad_input import decide as decide_args
from tests.test_bad_input import nothing_changes, refused


def _staff(demo: dict, role: str, nth: int = 0) -> int:
    return [p["id"] for p in demo["staff"] if p["role"] == role][nth]


def _add_staff(name: str, role: str, community_id: int | None, skills: str = "") -> int:
    with unit_of_work() as session:
        company_id = session.scalars(select(Community.company_id)).first()
        person = Staff(company_id=company_id, name=name, skills=skills)
        session.add(person)
        session.flush()
        session.add(StaffRole(staff_id=person.id, role=role, community_id=community_id))
        return person.id


def _yghy() -> int:
    with unit_of_work() as session:
        return session.scalars(select(Community.id).where(Community.code == "YGHY")).one()


@pytest.fixture
def other(demo: dict) -> dict[str, int]:
    """A second community of the same company, with its own technician, front desk, cleaner."""
    with unit_of_work() as session:
        yghy = session.scalars(select(Community).where(Community.code == "YGHY")).one()
        community = Community(company_id=yghy.company_id, code="HXY", name="和谐苑")
        session.add(community)
        session.flush()
        community_id = community.id
    return {
        "technician": _add_staff("外区维修工", "technician", community_id, "plumbing,electrical"),
        "csr": _add_staff("外区客服", "csr", community_id),
        "cleaning": _add_staff("外区保洁", "cleaning", community_id),
        "cs_supervisor": _add_staff("外区主管", "cs_supervisor", community_id),
    }


def _repair(**fields: Any) -> str:
    return actions.open_repair(start_run=False, **({
        "unit": "1-1-101", "category": "public_area", "priority": "medium",
        "reporter": "业主张三", "phone": "13800138000", "description": "楼道灯不亮"} | fields),
    )["number"]


def _complaint(**fields: Any) -> str:
    return actions.open_complaint(start_run=False, **({
        "unit": "1-1-101", "complainant": "业主张三", "phone": "13800138000",
        "category": "environment", "description": "垃圾三天没清"} | fields))["number"]


def _open(clock, number: str, key: str, kind: str, role: str,  # type: ignore[no-untyped-def]
          assignee: int | None = None, context: dict[str, Any] | None = None) -> int:
    with unit_of_work() as session:
        case = directory.case(session, number)
        return steps.open_step(session, case=case, key=key, kind=kind, role=role,
                               assignee_id=assignee, now=clock.now(), context=context).id


def _lapse(clock, step_id: int) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work() as session:
        due = session.get(Step, step_id).due_at
    clock.advance(due - clock.now() + timedelta(seconds=1))
    assert sla.tick(start_pending=False).lapsed >= 1


def _refusal(step_id: int, staff_id: int, values: dict[str, Any] | None = None) -> PropflowError:
    with pytest.raises(PropflowError) as caught:
        actions.decide(step_id, staff_id, values or {})
    return caught.value


def _status(step_id: int) -> str:
    with unit_of_work() as session:
        return session.get(Step, step_id).status


# --- who may decide ----------------------------------------------------------------------------

def test_a_chain_level_decides_only_once_the_step_has_escalated_to_it(demo, clock, db):
    tech = _staff(demo, "technician")
    accept = _open(clock, _repair(), "accept#1", "accept", "technician", tech)
    with nothing_changes(db):
        error = _refusal(accept, _staff(demo, "cs_supervisor"))
    assert error.field == "as" and error.code == "forbidden"
    assert "规则（chain）" in error.message and "第 1 级" in error.message
    assert "第 0 级" in error.message and "expected" in error.message

    _lapse(clock, accept)  # now the 客服主管 has been told: level 1
    error = _refusal(accept, _staff(demo, "project_manager"))
    assert "规则（chain）" in error.message and "第 2 级" in error.message
    actions.decide(accept, _staff(demo, "cs_supervisor"), {"note": "已督办"})
    assert _status(accept) == "decided"


def test_the_cs_supervisor_may_not_approve_the_managers_compensation(demo, clock, db):
    """Finding 4: the 客服主管 approved a 500-yuan compensation, the project manager's step."""
    number = _complaint()
    investigate = _open(clock, number, "investigate#1", "investigate", "cleaning")
    actions.decide(investigate, _staff(demo, "cleaning"),
                   {"findings": "漏清", "proposed_resolution": "赔偿", "compensation": "500"})
    approve = _open(clock, number, "approve_resolution#1", "approve_resolution",
                    "project_manager", context={"approves": "investigate#1"})
    supervisor = _staff(demo, "cs_supervisor")
    with nothing_changes(db):
        error = _refusal(approve, supervisor, {"approved": True})
    assert "无权处理" in error.message and "project_manager" in error.message

    # A manager's step escalates past the manager, never down to the 客服主管.
    _lapse(clock, approve)
    with unit_of_work() as session:
        told = session.scalars(select(Escalation.to_role).where(
            Escalation.step_id == approve)).all()
    assert told == ["company_cs"]
    error = _refusal(approve, supervisor, {"approved": True})
    assert "规则（role）" in error.message
    actions.decide(approve, _staff(demo, "company_cs"), {"approved": True})
    assert _status(approve) == "decided"


def test_whoever_proposed_a_compensation_may_not_approve_it(demo, clock, db):
    """Finding 4: the second refusal puts the manager on `investigate`; they may not then
    approve their own proposal. Another manager may."""
    manager = _staff(demo, "project_manager")
    number = _complaint()
    investigate = _open(clock, number, "investigate#3", "investigate", "project_manager")
    actions.decide(investigate, manager, {"findings": "多次漏清",
                                          "proposed_resolution": "减免物业费",
                                          "compensation": "300"})
    approve = _open(clock, number, "approve_resolution#3", "approve_resolution",
                    "project_manager", context={"approves": "investigate#3"})
    with nothing_changes(db):
        error = _refusal(approve, manager, {"approved": True})
    assert error.field == "as"
    assert "规则（proposer）" in error.message and "investigate#3" in error.message

    deputy = _add_staff("副经理", "project_manager", _yghy())
    actions.decide(approve, deputy, {"approved": True})
    assert _status(approve) == "decided"


def test_an_assigned_step_is_decided_by_its_assignee_not_by_a_peer(demo, clock, db):
    tech, peer = _staff(demo, "technician"), _staff(demo, "technician", 1)
    accept = _open(clock, _repair(), "accept#1", "accept", "technician", tech)
    with nothing_changes(db):
        error = _refusal(accept, peer)
    assert "规则（assignee）" in error.message
    assert f"assignee staff {tech}（吴刚）" in error.message
    actions.decide(accept, tech, {"note": "马上到"})
    assert _status(accept) == "decided"


def test_an_unassigned_step_is_decided_by_its_role_in_the_cases_community(
        demo, other, clock, db):
    investigate = _open(clock, _complaint(), "investigate#1", "investigate", "cleaning")
    values = {"findings": "漏清", "proposed_resolution": "补清"}
    with nothing_changes(db):
        error = _refusal(investigate, other["cleaning"], values)  # a cleaner of 和谐苑
        assert "规则（role）" in error.message and "cleaning" in error.message
        error = _refusal(investigate, _staff(demo, "csr"), values)
        assert "规则（role）" in error.message
    actions.decide(investigate, _staff(demo, "cleaning"), values)
    assert _status(investigate) == "decided"


def test_stand_ins_are_the_ones_the_policy_names(demo, clock, db, policy_with):
    tech, supervisor = _staff(demo, "technician"), _staff(demo, "tech_supervisor")
    number = _repair()
    first = _open(clock, number, "accept#1", "accept", "technician", tech)
    actions.decide(first, supervisor, {"note": "我来安排"})  # demo.yaml: stand_ins.technician
    assert _status(first) == "decided"

    policy_with(stand_ins={"owner": ["csr"]})  # this company lets no supervisor stand in
    second = _open(clock, number, "accept#2", "accept", "technician", tech)
    with nothing_changes(db):
        error = _refusal(second, supervisor)
    assert "stand_ins.technician" in error.message and "规则（assignee）" in error.message


# --- whom a decision may name ------------------------------------------------------------------

def test_reassign_to_must_be_an_active_technician_of_the_cases_community(
        demo, other, clock, db):
    """Finding 4: reassign_to accepted a cleaner, a technician of another community, and an
    unknown id killed the run."""
    tech, supervisor = _staff(demo, "technician"), _staff(demo, "tech_supervisor")
    accept = _open(clock, _repair(), "accept#1", "accept", "technician", tech)
    left = _add_staff("已离职维修工", "technician", _yghy(), "civil")
    with unit_of_work() as session:
        session.get(Staff, left).active = False
    with nothing_changes(db):
        for bad, shown in ((_staff(demo, "cleaning"), "朱红"), (other["technician"], "外区维修工")):
            error = _refusal(accept, supervisor, {"reassign_to": bad})
            assert error.field == "reassign_to", error.message
            assert "规则（reference）" in error.message and shown in error.message
            assert "阳光花园" in error.message and "technician" in error.message
        for unknown in (9999, left):
            error = _refusal(accept, supervisor, {"reassign_to": unknown})
            assert error.field == "reassign_to" and "规则（reference）" in error.message
    actions.decide(accept, supervisor, {"reassign_to": _staff(demo, "technician", 1)})
    assert _status(accept) == "decided"


def test_an_unknown_reassign_to_is_refused_at_the_door_with_exit_2(demo, clock, db):
    tech, supervisor = _staff(demo, "technician"), _staff(demo, "tech_supervisor")
    accept = _open(clock, _repair(), "accept#1", "accept", "technician", tech)
    with nothing_changes(db):
        refused(decide_args(accept, supervisor, "reassign_to=9999"), "reassign_to", "9999",
                "规则（reference）", "expected")


def test_dispatch_names_an_active_technician_of_the_cases_community(demo, other, clock, db):
    supervisor = _staff(demo, "tech_supervisor")
    dispatch = _open(clock, _repair(category="equipment", description="电梯异响"),
                     "dispatch#1", "dispatch", "tech_supervisor")
    with nothing_changes(db):
        for bad in (_staff(demo, "security"), other["technician"], 9999):
            error = _refusal(dispatch, supervisor, {"technician": bad})
            assert error.field == "technician" and "规则（reference）" in error.message
    actions.decide(dispatch, supervisor, {"technician": _staff(demo, "technician", 2)})
    assert _status(dispatch) == "decided"


def test_the_first_responder_works_in_the_cases_community(demo, other, db):
    """Finding 4: --received-by accepted staff of another community."""
    with nothing_changes(db):
        refused(["complaint", "open", "--unit", "1-1-101", "--complainant", "业主张三",
                 "--phone", "13800138000", "--category", "environment",
                 "--description", "垃圾没清", "--received-by", str(other["csr"])],
                "received_by", "外区客服", "阳光花园", "规则（reference）")
        with pytest.raises(PropflowError) as caught:
            _repair(received_by=other["csr"])
        assert caught.value.field == "received_by"
        assert "规则（reference）" in caught.value.message
    # Whoever receives it owns it (首问责任制): any of the community's staff, or the company's.
    for anyone in (_staff(demo, "security"), _staff(demo, "company_cs")):
        number = _complaint(received_by=anyone)
        assert actions.show_case(number)["first_responder"] == anyone
    assert _repair(received_by=_staff(demo, "csr", 1))


def test_assigning_a_technician_who_has_left_does_not_kill_the_run(demo, clock):
    """The decision named an active technician; by the time the run assigns them they left.
    The run goes on (a stand-in or the chain reassigns), and the timeline says so."""
    from tasks.repair import assign

    tech = _staff(demo, "technician", 1)
    number = _repair()
    with unit_of_work() as session:
        case_id = directory.case(session, number).id
        session.get(Staff, tech).active = False
    assert assign.fn(case_id, tech) == "郑浩"
    with unit_of_work() as session:
        assert session.get(Case, case_id).assignee_id == tech
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.case_id == case_id)).all()
    assert "assignee_unavailable" in actions


def test_past_the_top_of_its_chain_the_company_service_centre_may_decide(demo, clock):
    """Every level of the chain vacant: company_cs is told (the last resort) and may decide."""
    from models.steps import record_escalation

    number = actions.report_emergency(start_run=False, kind="office_a", community="YGHY",
                                      location="客服中心", reporter="前台")["number"]
    receive = _open(clock, number, "receive#1", "receive", "csr")  # chain: director, manager
    company = _staff(demo, "company_cs")
    error = _refusal(receive, company, {"media_present": False})
    assert "规则（role）" in error.message
    with unit_of_work() as session:
        for role in ("cs_director", "project_manager"):
            session.get(Staff, _staff(demo, role)).active = False
    _lapse(clock, receive)
    with unit_of_work() as session:
        record_escalation(session, session.scalars(select(Escalation)).one(), clock.now())
    actions.decide(receive, company, {"media_present": False})
    assert _status(receive) == "decided"
