"""Approval operations (issue 8): claim and unclaim, 转办, 委派, 加签, 抄送, 驳回, 撤回, and
multi-approver steps from the policy (会签, 或签, 依次). Each is audited, each refusal names
its rule and changes nothing. Fast tier: cases opened without a run, steps opened directly,
on SQLite and PostgreSQL; the flow tests at the end drive a repair run in-process."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from core.errors import PropflowError
from core.settings import DEMO_POLICY
from models import directory, operations, steps
from models.db import unit_of_work
from models.notices import local
from models.outbox import AuditEvent, Notification
from propflow import actions
from tests.test_bad_input import nothing_changes, refused


def _staff(demo: dict, role: str, nth: int = 0) -> int:
    return [p["id"] for p in demo["staff"] if p["role"] == role][nth]


def _repair() -> str:
    return actions.open_repair(start_run=False, unit="1-1-101", category="public_area",
                               priority="medium", reporter="业主张三", phone="13800138000",
                               description="楼道灯不亮")["number"]


def _complaint() -> str:
    return actions.open_complaint(start_run=False, unit="1-1-101", complainant="业主张三",
                                  phone="13800138000", category="environment",
                                  description="垃圾三天没清")["number"]


def _open(clock: Any, number: str, key: str, kind: str, role: str,
          assignee: int | None = None, context: dict[str, Any] | None = None,
          due_at: Any = None) -> int:
    with unit_of_work() as session:
        case = directory.case(session, number)
        return steps.open_step(session, case=case, key=key, kind=kind, role=role,
                               assignee_id=assignee, now=clock.now(), context=context,
                               due_at=due_at).id


def _step(step_id: int) -> dict[str, Any]:
    return actions.show_step(step_id)


def _refused(call: Any, *expected: str, code: str | None = None) -> PropflowError:
    with pytest.raises(PropflowError) as caught:
        call()
    for part in expected:
        assert part in caught.value.message, (part, caught.value.message)
    if code:
        assert caught.value.code == code
    return caught.value


def _actions(number: str) -> list[tuple[str, str, dict]]:
    with unit_of_work() as session:
        case = directory.case(session, number)
        return [(a.actor, a.action, a.detail) for a in session.scalars(
            select(AuditEvent).where(AuditEvent.case_id == case.id).order_by(AuditEvent.id))]


def _told(staff_id: int, event: str = "step_operation") -> list[str]:
    with unit_of_work() as session:
        return list(session.scalars(select(Notification.subject).where(
            Notification.recipient == f"staff:{staff_id}", Notification.event == event,
            Notification.channel == "inbox").order_by(Notification.id)))


# --- claim and unclaim ---------------------------------------------------------------------------

def test_claim_takes_a_role_step_and_unclaim_gives_it_back(demo, clock, db):
    first, second = _staff(demo, "csr", 0), _staff(demo, "csr", 1)
    number = _repair()
    call = _open(clock, number, "phone_callback#1", "phone_callback", "csr")
    with nothing_changes(db):
        _refused(lambda: actions.claim(call, _staff(demo, "technician")), "规则（role）")
        _refused(lambda: actions.unclaim(call, first), "规则（unclaim）")
    assert actions.claim(call, first)["assignee"] == first
    # Now theirs: the other front-desk clerk may neither decide it nor claim it.
    _refused(lambda: actions.decide(call, second, {"reached": True}), "规则（assignee）")
    _refused(lambda: actions.claim(call, second), "规则（claim）", code="conflict")
    _refused(lambda: actions.unclaim(call, second), "规则（unclaim）")
    assert [s["id"] for s in actions.list_steps(mine=first)] == [call]
    assert actions.list_steps(mine=second) == []

    assert actions.unclaim(call, first)["assignee"] is None
    assert {s["id"] for s in actions.list_steps(mine=second)} == {call}
    assert _told(second) and "退回待领" in _told(second)[-1]
    done = [a for _, a, _ in _actions(number) if a in ("claimed", "unclaimed")]
    assert done == ["claimed", "unclaimed"]
    actions.decide(call, second, {"reached": True, "rating": 5})
    assert _step(call)["status"] == "decided"


def test_claim_refused_on_an_assigned_step_and_through_the_cli(demo, clock, db):
    tech = _staff(demo, "technician")
    accept = _open(clock, _repair(), "accept#1", "accept", "technician", tech)
    with nothing_changes(db):
        refused(["steps", "claim", str(accept), "--as", str(_staff(demo, "technician", 1))],
                "step", "规则（claim）", "expected")
        refused(["steps", "unclaim", str(accept), "--as", str(tech)], "as", "规则（unclaim）")


# --- transfer ------------------------------------------------------------------------------------

def test_transfer_hands_the_step_to_a_colleague_of_the_role(demo, clock, db):
    first, second = _staff(demo, "technician", 0), _staff(demo, "technician", 1)
    number = _repair()
    accept = _open(clock, number, "accept#1", "accept", "technician", first)
    with nothing_changes(db):
        # Not a technician of this community; not a colleague at all; not the step's decider.
        _refused(lambda: actions.transfer(accept, first, _staff(demo, "cs_supervisor")),
                 "规则（reference）", "technician")
        _refused(lambda: actions.transfer(accept, first, 99999), "to", "规则（reference）")
        _refused(lambda: actions.transfer(accept, first, first), "不能指定自己")
        _refused(lambda: actions.transfer(accept, _staff(demo, "csr"), second), "规则（assignee）")
        refused(["steps", "transfer", str(accept), "--as", str(first), "--to",
                 str(_staff(demo, "cleaning"))], "to", "规则（reference）")

    result = actions.transfer(accept, first, second, reason="我在外区，请郑浩处理")
    assert result["to"] == second and _step(accept)["assignee"] == second
    _refused(lambda: actions.decide(accept, first, {"note": "我来"}), "规则（assignee）")
    assert "转办" in _told(second)[-1]
    audit = [d for _, a, d in _actions(number) if a == "transferred"]
    assert audit == [{"step": "accept#1", "from": first, "to": second, "role": "technician",
                      "reason": "我在外区，请郑浩处理", "rule": "assignee"}]
    actions.decide(accept, second, {"note": "马上到"})
    assert _step(accept)["decision"]["by"] == second


def test_an_owner_step_cannot_be_transferred(demo, clock, db):
    quote = _open(clock, _repair(), "quote#1", "quote", "owner")
    with nothing_changes(db):
        _refused(lambda: actions.transfer(quote, _staff(demo, "csr"), _staff(demo, "csr", 1)),
                 "规则（owner）")


# --- delegate -------------------------------------------------------------------------------------

def test_a_delegates_answer_is_a_proposal_the_delegator_decides(demo, clock, db):
    tech, helper = _staff(demo, "technician", 0), _staff(demo, "steward")
    number = _repair()
    accept = _open(clock, number, "accept#1", "accept", "technician", tech)
    actions.delegate(accept, tech, helper, reason="帮我约一下业主时间")
    assert "委派" in _told(helper)[-1]
    assert accept in {s["id"] for s in actions.list_steps(mine=helper)}
    _refused(lambda: actions.delegate(accept, tech, _staff(demo, "csr")), "规则（delegate）")

    answer = actions.decide(accept, helper, {"note": "业主下午三点在家"})
    assert answer["settled"] is False and _step(accept)["status"] == "waiting"
    assert "委派答复" in _told(tech)[-1]
    _refused(lambda: actions.decide(accept, helper, {"note": "再改"}), "无权处理")
    # The final word: taken as proposed (no values given).
    final = actions.decide(accept, tech, {})
    assert final["settled"] and final["values"]["note"] == "业主下午三点在家"
    shown = _step(accept)
    assert shown["decision"]["by"] == tech
    assert [(r["kind"], r["status"]) for r in shown["signers"]] == [("delegate", "proposed")]
    assert [a for _, a, _ in _actions(number) if a in ("delegated", "signed", "decided")] == [
        "delegated", "signed", "decided"]


# --- add a signer -----------------------------------------------------------------------------

def test_a_signer_added_before_signs_first_then_it_returns(demo, clock, db):
    tech, senior = _staff(demo, "technician", 0), _staff(demo, "tech_supervisor")
    accept = _open(clock, _repair(), "accept#1", "accept", "technician", tech)
    with nothing_changes(db):
        refused(["steps", "add-signer", str(accept), "--as", str(tech), "--to", str(senior),
                 "--position", "sideways"], "position", "expected before")
    actions.add_signer(accept, tech, senior, position="before", reason="请主管先看")
    with nothing_changes(db):
        _refused(lambda: actions.decide(accept, tech, {"note": "我来"}),
                 "规则（add_signer_before）", senior and "何军")
    signed = actions.decide(accept, senior, {"note": "可以接"})
    assert signed["settled"] is False
    assert "前加签已处理" in _told(tech)[-1]
    assert actions.decide(accept, tech, {"note": "接单"})["settled"]


def test_a_signer_added_after_must_approve_before_the_step_settles(demo, clock, db):
    tech, boss = _staff(demo, "technician", 0), _staff(demo, "cs_supervisor")
    accept = _open(clock, _repair(), "accept#1", "accept", "technician", tech)
    actions.add_signer(accept, tech, boss, position="after")
    with nothing_changes(db):
        early = _refused(lambda: actions.decide(accept, boss, {"note": "同意"}),
                         "规则（add_signer_after）")
    assert f"expected 员工 {tech}（" in early.message
    mine = actions.decide(accept, tech, {"note": "今天去"})
    assert mine["settled"] is False
    assert "轮到您审批" in _told(boss)[-1]
    assert [w["staff"] for w in mine["waiting_for"]] == [boss]
    _refused(lambda: actions.decide(accept, tech, {"note": "改"}), "规则（add_signer_after）")
    done = actions.decide(accept, boss, {"note": "同意"})
    assert done["settled"]
    decision = _step(accept)["decision"]
    assert decision["by"] == tech and decision["values"]["note"] == "今天去"


def test_an_after_signer_who_refuses_an_approval_settles_it_refused(demo, clock, db):
    number = _complaint()
    manager, director = _staff(demo, "project_manager"), _staff(demo, "cs_director")
    approve = _open(clock, number, "approve_resolution#1", "approve_resolution",
                    "project_manager")
    # Acting on an unassigned step of one's role takes it: now the manager's.
    actions.add_signer(approve, manager, director, position="after")
    assert _step(approve)["assignee"] == manager
    actions.decide(approve, manager, {"approved": True})
    actions.decide(approve, director, {"approved": False, "reason": "金额过高"})
    decision = _step(approve)["decision"]
    assert decision["by"] == director and decision["values"]["approved"] is False


# --- cc -------------------------------------------------------------------------------------------

def test_watchers_are_told_may_look_and_may_not_decide(demo, clock, db):
    tech, csr = _staff(demo, "technician", 0), _staff(demo, "csr")
    accept = _open(clock, _repair(), "accept#1", "accept", "technician", tech)
    with nothing_changes(db):
        _refused(lambda: actions.cc(accept, csr, [tech]), "规则（assignee）")
        _refused(lambda: actions.cc(accept, tech, []), "to")
    result = actions.cc(accept, tech, f"{csr},{_staff(demo, 'cs_supervisor')}", reason="知悉")
    assert result["to"] == [csr, _staff(demo, "cs_supervisor")]
    assert "抄送" in _told(csr)[-1]
    with nothing_changes(db):
        _refused(lambda: actions.decide(accept, csr, {"note": "x"}), "规则（cc）", "只能查看")
    with unit_of_work() as session:
        step = directory.step(session, accept)
        assert operations.may_view(session, step, directory.staff(session, csr)) == "cc"
        assert operations.may_view(session, step, directory.staff(
            session, _staff(demo, "cleaning"))) is None
    assert actions.list_steps(mine=csr) == []  # told, not asked
    assert [s["id"] for s in actions.list_steps(copied=csr)] == [accept]
    from propflow.cli import app
    from tests.test_bad_input import runner

    listed = runner.invoke(app, ["steps", "list", "--copied", "--as", str(csr), "--json"])
    assert listed.exit_code == 0 and f'"id": {accept}' in listed.stdout


# --- multi-approver steps from the policy ---------------------------------------------------

@pytest.fixture
def signers_policy(policy_with):  # type: ignore[no-untyped-def]
    def write(mode: str, roles: list[str]) -> Path:
        def edit(data: dict) -> None:  # type: ignore[type-arg]
            step = data["procedures"]["complaint"]["steps"]["approve_resolution"]
            step["default"]["signers"] = {"mode": mode, "roles": roles}

        return policy_with(edit)  # type: ignore[no-any-return]

    return write


def _approval(clock: Any) -> tuple[str, int]:
    number = _complaint()
    return number, _open(clock, number, "approve_resolution#1", "approve_resolution",
                         "project_manager")


def test_all_must_approve_a_countersigned_step(demo, clock, db, signers_policy):
    signers_policy("all", ["project_manager", "cs_director"])
    manager, director = _staff(demo, "project_manager"), _staff(demo, "cs_director")
    number, approve = _approval(clock)
    assert _step(approve)["sign_mode"] == "all"
    assert _told(manager, "step_opened") and _told(director, "step_opened")  # both asked
    assert {s["id"] for s in actions.list_steps(mine=director)} == {approve}
    first = actions.decide(approve, manager, {"approved": True})
    assert first["settled"] is False and [w["role"] for w in first["waiting_for"]] == [
        "cs_director"]
    with nothing_changes(db):
        _refused(lambda: actions.decide(approve, manager, {"approved": True}), "规则（signed）")
        _refused(lambda: actions.decide(approve, _staff(demo, "csr"), {"approved": True}),
                 "无权处理")
        _refused(lambda: actions.claim(approve, manager), "规则（signers）")
    assert actions.decide(approve, director, {"approved": True})["settled"]
    assert _step(approve)["decision"]["by"] == director
    assert [a for _, a, _ in _actions(number) if a in ("signed", "decided")] == [
        "signed", "decided"]


def test_one_refusal_settles_a_countersigned_step(demo, clock, db, signers_policy):
    signers_policy("all", ["project_manager", "cs_director"])
    _, approve = _approval(clock)
    actions.decide(approve, _staff(demo, "cs_director"), {"approved": False, "reason": "不同意"})
    assert _step(approve)["decision"]["values"]["approved"] is False


def test_any_one_approver_suffices(demo, clock, db, signers_policy):
    signers_policy("any", ["project_manager", "cs_director"])
    _, approve = _approval(clock)
    assert actions.decide(approve, _staff(demo, "cs_director"), {"approved": True})["settled"]
    assert [r["status"] for r in _step(approve)["signers"]] == ["cancelled", "signed"]


def test_approvers_in_sequence_sign_in_the_listed_order(demo, clock, db, signers_policy):
    signers_policy("sequence", ["project_manager", "cs_director"])
    manager, director = _staff(demo, "project_manager"), _staff(demo, "cs_director")
    _, approve = _approval(clock)
    with nothing_changes(db):
        _refused(lambda: actions.decide(approve, director, {"approved": True}),
                 "规则（sequence）")
    assert actions.list_steps(mine=director) == []
    assert _told(manager, "step_opened") and not _told(director, "step_opened")
    assert actions.decide(approve, manager, {"approved": True})["settled"] is False
    assert "轮到您审批" in _told(director)[-1]
    assert [s["id"] for s in actions.list_steps(mine=director)] == [approve]
    assert actions.decide(approve, director, {"approved": True})["settled"]


def test_the_cli_records_a_signature_and_shows_whom_the_step_waits_for(demo, clock, db,
                                                                        signers_policy):
    from propflow.cli import app
    from tests.test_bad_input import runner

    signers_policy("sequence", ["project_manager", "cs_director"])
    _, approve = _approval(clock)
    signed = runner.invoke(app, ["steps", "decide", str(approve), "--as",
                                 str(_staff(demo, "project_manager")), "--set", "approved=true"])
    assert signed.exit_code == 0, signed.output
    assert "settled: False" in signed.stdout and "cs_director" in signed.stdout
    shown = runner.invoke(app, ["steps", "show", str(approve)])
    assert "多人审批 signers: sequence" in shown.stdout
    assert "等待 waiting for: cs_director" in shown.stdout
    audit = [d for _, a, d in _actions(_step(approve)["case"]) if a == "signed"]
    assert audit[0]["part"] == "approver" and audit[0]["values"] == {"approved": True,
                                                                     "reason": ""}


def test_a_transfer_moves_an_approvers_place(demo, clock, db, signers_policy):
    signers_policy("all", ["project_manager", "cs_director"])
    _, approve = _approval(clock)
    with unit_of_work() as session:  # a second manager of the community
        from models.org import Staff, StaffRole

        yghy = directory.community(session, "YGHY")
        other = Staff(company_id=yghy.company_id, name="副经理", skills="")
        session.add(other)
        session.flush()
        session.add(StaffRole(staff_id=other.id, role="project_manager", community_id=yghy.id))
        other_id = other.id
    manager = _staff(demo, "project_manager")
    actions.transfer(approve, manager, other_id)
    _refused(lambda: actions.decide(approve, manager, {"approved": True}), "无权处理")
    actions.decide(approve, other_id, {"approved": True})
    assert actions.decide(approve, _staff(demo, "cs_director"), {"approved": True})["settled"]


def test_the_policy_names_known_roles_for_signers(tmp_path):
    from core.policy import load_policy

    data = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))
    data["procedures"]["complaint"]["steps"]["approve_resolution"]["default"]["signers"] = {
        "mode": "all", "roles": ["project_manager", "boss"]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PropflowError) as caught:
        load_policy(path)
    assert caught.value.field == "procedures.complaint.steps.approve_resolution.default." \
                                 "signers.roles[1]"
    data["procedures"]["complaint"]["steps"]["approve_resolution"]["default"]["signers"] = {
        "mode": "majority", "roles": ["project_manager"]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PropflowError) as caught:
        load_policy(path)
    assert "signers.mode" in caught.value.field


# --- send back and withdraw ---------------------------------------------------------------------

def test_send_back_reopens_the_previous_step_for_its_decider(demo, clock, db):
    number = _complaint()
    cleaner, manager = _staff(demo, "cleaning"), _staff(demo, "project_manager")
    investigate = _open(clock, number, "investigate#1", "investigate", "cleaning")
    with nothing_changes(db):
        _refused(lambda: actions.send_back(investigate, cleaner, "没有上一步"),
                 "规则（send_back）")
    actions.decide(investigate, cleaner, {"findings": "漏清", "proposed_resolution": "补清",
                                          "compensation": "500"})
    approve = _open(clock, number, "approve_resolution#1", "approve_resolution",
                    "project_manager", context={"approves": "investigate#1"})
    with nothing_changes(db):
        refused(["steps", "send-back", str(approve), "--as", str(manager), "--reason", " "],
                "reason", "expected --reason")
        _refused(lambda: actions.send_back(approve, _staff(demo, "csr"), "不行"), "无权处理")

    result = actions.send_back(approve, manager, "补偿金额没有依据")
    assert result["sent_back_to"] == "investigate#1"
    assert result["reopened_key"] == "investigate#1~1" and result["assignee"] == cleaner
    shown = _step(approve)
    assert shown["status"] == "cancelled" and shown["rewound"]
    assert "驳回" in _told(cleaner)[-1]
    audit = [d for _, a, d in _actions(number) if a == "sent_back"]
    assert audit[0]["reason"] == "补偿金额没有依据" and audit[0]["cancelled"] == [
        "approve_resolution#1"]
    # The run asks the same keys again: investigate#1 is now its new instance, the approval a
    # new one opened when asked (and the proposer rule follows the new proposal).
    again = _open(clock, number, "investigate#1", "investigate", "cleaning")
    assert again == result["reopened"]
    actions.decide(again, cleaner, {"findings": "漏清", "proposed_resolution": "补清"})
    approve2 = _open(clock, number, "approve_resolution#1", "approve_resolution",
                     "project_manager", context={"approves": "investigate#1"})
    assert approve2 not in (approve, again)
    assert _step(approve2)["key"] == "approve_resolution#1~1"
    assert _open(clock, number, "approve_resolution#1", "approve_resolution",
                 "project_manager") == approve2
    actions.decide(approve2, manager, {"approved": True})


def test_withdraw_cancels_the_untouched_next_step_and_waits_again(demo, clock, db):
    tech, other = _staff(demo, "technician", 0), _staff(demo, "technician", 1)
    number = _repair()
    accept = _open(clock, number, "accept#1", "accept", "technician", tech)
    actions.decide(accept, tech, {"note": "好"})
    with nothing_changes(db):
        _refused(lambda: actions.withdraw(accept, tech), "下一步开始后才能撤回")
    complete = _open(clock, number, "complete#1", "complete", "technician", tech)
    with nothing_changes(db):
        _refused(lambda: actions.withdraw(accept, other), "规则（withdraw）", code="forbidden")
        _refused(lambda: actions.withdraw(complete, tech), "规则（withdraw）")
        refused(["steps", "withdraw", str(accept), "--as", str(other)], "as", "规则（withdraw）")

    result = actions.withdraw(accept, tech, reason="写错了时间")
    assert result["cancelled"] == ["complete#1"] and result["reopened_key"] == "accept#1~1"
    assert _step(complete)["status"] == "cancelled" and _step(complete)["rewound"]
    assert _step(accept)["status"] == "decided"  # the record of the first decision stays
    assert [s["key"] for s in actions.list_steps(mine=tech)] == ["accept#1~1"]
    assert _open(clock, number, "accept#1", "accept", "technician", tech) == result["reopened"]
    _refused(lambda: actions.withdraw(accept, tech), "规则（withdraw）")  # replaced now
    # Asked again, the cancelled step opens anew — with the due time the flow gives, if any.
    due = clock.now() + timedelta(hours=5)
    again = _open(clock, number, "complete#1", "complete", "technician", tech, due_at=due)
    assert _step(again)["key"] == "complete#1~1" and _step(again)["due_at"] == local(due)
    assert [a for _, a, _ in _actions(number)].count("withdrawn") == 1


def test_withdraw_refused_once_the_next_step_is_decided(demo, clock, db):
    tech = _staff(demo, "technician", 0)
    number = _repair()
    accept = _open(clock, number, "accept#1", "accept", "technician", tech)
    actions.decide(accept, tech, {})
    complete = _open(clock, number, "complete#1", "complete", "technician", tech)
    actions.decide(complete, tech, {"diagnosis": "灯管坏"})
    _open(clock, number, "owner_acceptance#1", "owner_acceptance", "owner")
    with nothing_changes(db):
        _refused(lambda: actions.withdraw(accept, tech), "complete#1", "驳回")
    assert actions.withdraw(complete, tech)["cancelled"] == ["owner_acceptance#1"]


# --- honoured by a running flow (in-process, paused in place) -------------------------------

@pytest.mark.usefixtures("prefect_api")
def test_a_repair_run_honours_transfer_send_back_and_withdraw(demo, clock):
    from tests.flowkit import RepairRun

    run = RepairRun(demo, clock)
    first = run.step("accept#1")["assignee"]
    other = next(p["id"] for p in demo["staff"]
                 if p["role"] == "technician" and p["id"] != first)
    # 转办: the colleague accepts; the run goes on with their decision.
    actions.transfer(run.step("accept#1")["id"], first, other, reason="我请假")
    run.decide("accept#1", other, note="我去")
    run.decide("complete#1", first, diagnosis="灯管老化", work_done="更换")
    # 驳回: the front desk sends the acceptance back to the work; the technician does it
    # again, and the run comes back to the owner's acceptance through the procedure.
    back = actions.send_back(run.step("owner_acceptance#1")["id"], run.role("csr"),
                             "业主说灯还是不亮")
    assert back["reopened_key"] == "complete#1~1"
    run.decide("complete#1~1", first, diagnosis="镇流器坏", work_done="更换镇流器")
    # The acceptance is asked again, as a new instance of the step sent back past.
    run.decide("owner_acceptance#1~1", run.role("csr"), accepted=True)
    # 撤回: the front desk recorded "accepted" by mistake; the callback nobody touched yet
    # is cancelled, the acceptance waits again, and the run takes the refusal's path.
    callback = run.step("callback#1")
    withdrawn = actions.withdraw(_id(run, "owner_acceptance#1~1"), run.role("csr"),
                                 reason="记错了，业主不认可")
    assert withdrawn["cancelled"] == ["callback#1"]
    run.decide("owner_acceptance#1~2", run.role("csr"), accepted=False, reason="仍有异响")
    run.decide("reinspection#1", "tech_supervisor", finding="已修好，异响为外部", redo=False)
    run.decide("callback#1~1", run.role("csr"), rating=5)  # asked again: a new instance
    assert run.finish() == "done"

    case = run.show()
    status = {s["key"]: s["status"] for s in case["steps"]}
    assert status == {
        "accept#1": "decided", "complete#1": "decided", "owner_acceptance#1": "cancelled",
        "complete#1~1": "decided", "owner_acceptance#1~1": "decided",
        "callback#1": "cancelled", "owner_acceptance#1~2": "decided",
        "reinspection#1": "decided", "callback#1~1": "decided"}
    decided = {s["key"]: s["decision"]["by"] for s in case["steps"] if "decision" in s}
    assert decided["accept#1"] == other
    assert callback["id"] != _id(run, "callback#1~1")
    assert [s["key"] for s in case["steps"] if s["status"] == "waiting"] == []
    actions_seen = [t["action"] for t in case["timeline"]]
    for action in ("transferred", "sent_back", "withdrawn"):
        assert actions_seen.count(action) == 1


def _id(run: Any, key: str) -> int:
    return next(s["id"] for s in run.show()["steps"] if s["key"] == key)


# --- served: suspended runs replayed from the record ---------------------------------------

@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_served_complaint_countersigned_and_sent_back_is_resolved(service, demo,
                                                                    signers_policy):
    """会签 by the manager and the 客服经理, and a 驳回 to the plan, each through a run that
    suspends at every step and replays its body when resumed."""
    from tests.flowkit import COMPLAINT, until
    from tests.servekit import state
    from tests.test_served_procedures import closed, decide, run_of

    service.env["PROPFLOW_POLICY"] = str(signers_policy(
        "all", ["project_manager", "cs_director"]))
    service.start()
    who = demo["by_role"]
    number = actions.open_complaint(**COMPLAINT)["number"]
    responder = actions.show_case(number)["first_responder"]
    decide(number, "acknowledge#1", responder, note="已安抚业主")
    decide(number, "investigate#1", who["cleaning"], findings="排班漏了",
           proposed_resolution="赔偿", compensation="500")
    # The manager signs; the step still waits for the 客服经理 (no decision yet).
    decide(number, "approve_resolution#1", who["project_manager"], approved=True)
    approve = _id_in(number, "approve_resolution#1")
    assert _step(approve)["status"] == "waiting"
    # The 客服经理 sends it back to the plan; the run rewinds and asks the cleaner again.
    until("the run to suspend again", lambda: state(run_of(number)) == "Suspended")
    actions.send_back(approve, who["cs_director"], "赔偿金额过高，请重新核定")
    decide(number, "investigate#1~1", who["cleaning"], findings="排班漏了",
           proposed_resolution="赔偿", compensation="100")
    decide(number, "approve_resolution#1~1", who["project_manager"], approved=True)
    decide(number, "approve_resolution#1~1", who["cs_director"], approved=True)
    decide(number, "resolve#1", who["cleaning"], result="已清运并赔偿")
    decide(number, "feedback#1", responder, accepted=True)
    decide(number, "callback#1", who["csr"], rating=5)

    case = closed(number, "resolved")
    steps_ = {s["key"]: s for s in case["steps"]}
    assert steps_["approve_resolution#1"]["status"] == "cancelled"
    assert steps_["investigate#1"]["status"] == "decided"
    assert steps_["approve_resolution#1~1"]["decision"]["by"] == who["cs_director"]
    signers_ = _step(steps_["approve_resolution#1~1"]["id"])["signers"]
    assert [(r["role"], r["status"]) for r in signers_] == [
        ("project_manager", "signed"), ("cs_director", "signed")]
    # The result told to the complainant is the revised plan's.
    result = [n for n in case["notifications"] if n["event"] == "result"]
    assert len(result) == 1
    assert [t["action"] for t in case["timeline"]].count("sent_back") == 1


def _id_in(number: str, key: str) -> int:
    return next(s["id"] for s in actions.show_case(number)["steps"] if s["key"] == key)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_served_repair_withdrawn_and_transferred_is_done(service, demo):
    """撤回 through a suspended run: the journal says the acceptance was decided, the record
    says it was withdrawn; the replay follows the record."""
    from tests.flowkit import until
    from tests.servekit import state
    from tests.test_served_procedures import closed, decide, run_of

    service.start()
    who = demo["by_role"]
    number = actions.open_repair(unit="1-1-101", category="public_area", priority="medium",
                                 reporter="业主张三", phone="13800138000",
                                 description="楼道灯不亮")["number"]
    tech = until("accept#1", lambda: _assignee(number, "accept#1"))
    other = next(p["id"] for p in demo["staff"] if p["role"] == "technician" and p["id"] != tech)
    decide(number, "accept#1", tech, note="明天去")
    until("complete#1", lambda: _assignee(number, "complete#1"))
    until("the run to suspend at complete#1", lambda: state(run_of(number)) == "Suspended")
    actions.withdraw(_id_in(number, "accept#1"), tech, reason="时间写错")
    decide(number, "accept#1~1", tech, note="今天下午去")
    # The work is handed to a colleague (转办); the run waits for their decision.
    until("complete#1~1", lambda: _assignee(number, "complete#1~1"))
    until("the run to suspend", lambda: state(run_of(number)) == "Suspended")
    actions.transfer(_id_in(number, "complete#1~1"), tech, other, reason="换人")
    decide(number, "complete#1~1", other, diagnosis="灯管老化")
    decide(number, "owner_acceptance#1", who["csr"], accepted=True)
    decide(number, "callback#1", who["csr"], rating=5)

    case = closed(number, "done")
    status = {s["key"]: s["status"] for s in case["steps"]}
    assert status["accept#1"] == "decided" and status["complete#1"] == "cancelled"
    assert status["accept#1~1"] == "decided" and status["complete#1~1"] == "decided"
    assert case["steps"][-2]["decision"]["by"] == who["csr"]
    done = [s for s in case["steps"] if s["key"] == "complete#1~1"][0]
    assert done["decision"]["by"] == other
    timeline = [t["action"] for t in case["timeline"]]
    assert timeline.count("withdrawn") == 1 and timeline.count("transferred") == 1


def _assignee(number: str, key: str) -> int | None:
    steps_ = {s["key"]: s for s in actions.show_case(number)["steps"]}
    return steps_[key]["assignee"] if key in steps_ else None
