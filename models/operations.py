"""Approval operations as Chinese offices expect them: each a rule, a write and an audit row.

认领 claim and 退回 unclaim a role's step; 转办 transfer it to a colleague; 委派 delegate it
(their answer comes back as a proposal for the final word); 加签 add someone before or after
oneself; 抄送 copy watchers (read only); 驳回 send it back to the previous human step; 撤回
withdraw one's decision while the next step is untouched. Signatures themselves are
models.signers; the flow honours all of it through the record (flows/human.py): a step
settles once its rule is satisfied, and a send-back or a withdrawal rewinds the run.

Each function checks everything before it writes; a refusal names its rule, like
models.authority, and changes nothing. Each returns what the door shows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.errors import Conflict, Forbidden, PropflowError
from core.policy import get_policy
from core.vocabulary import CaseStatus, Role, StepStatus
from models import authority, limits, notices, signers, steps
from models.authority import staff_label
from models.cases import Step
from models.db import rowcount
from models.directory import roles_of
from models.org import Staff
from models.outbox import Recipient, audit
from models.signers import Signer

LABELS = {  # operation: (zh, en, what the one told is to do, zh and en)
    "claim": ("认领", "claimed", "", ""),
    "unclaim": ("退回待领", "returned to the role", "该步骤已退回本角色，可认领后处理。",
                "The step is back with the role: claim it to work on it."),
    "transfer": ("转办", "transferred", "该步骤已转给您处理。", "The step is now yours to decide."),
    "delegate": ("委派", "delegated", "请代为处理；您的答复将作为建议交回委派人定夺。",
                 "Please work it: your answer goes back to them as a proposal."),
    "add_signer_before": ("前加签", "added you before them",
                          "请先处理该步骤，之后回到加签人。",
                          "Please sign first; then it returns to them."),
    "add_signer_after": ("后加签", "added you after them",
                         "加签人处理后，须经您审批流程才继续。",
                         "Once they decide, your approval is needed before the case moves on."),
    "cc": ("抄送", "copied you", "仅供知悉，无需处理。", "For your information; nothing to do."),
    "send_back": ("驳回", "sent back", "该步骤已退回给您重新处理。",
                  "The step is back with you to decide again."),
    "proposed": ("委派答复", "answered the delegation",
                 "受托人已答复，请定夺（可直接采纳：不带 --set 处理即可）。",
                 "The delegate answered: decide (with no --set to take their answer)."),
    "signed_before": ("前加签已处理", "signed before you", "请继续处理。", "Your turn again."),
    "your_turn": ("轮到您审批", "your turn to approve", "前一位已签署，请处理。",
                  "The signer before you has signed: your turn."),
}


def _waiting(step: Step, field: str = "step") -> None:
    if step.status != StepStatus.WAITING:
        raise Conflict(f"{field}：步骤 {step.id}（{step.kind}）已不在等待处理 (status "
                       f"{step.status})；expected a waiting step from `propflow steps list`",
                       field=field)


def _reason(reason: str, *, required: bool = False) -> str:
    reason = (reason or "").strip()
    if required and not reason:
        raise PropflowError("reason：请说明原因；expected --reason TEXT", field="reason")
    limits.check_length(reason, "reason", limits.NOTE)
    return reason


def _tell(session: Session, step: Step, operation: str, by: Staff, to: list[Recipient],
          reason: str, now: datetime, key: str | None = None) -> None:
    if not to:
        return
    zh, en, note, note_en = LABELS[operation]
    ctx = notices.step_context(session, step, get_policy().lang)
    ctx.update(operation_label=zh, operation_en=en, by_name=by.name, reason=reason, note=note,
               note_en=note_en)
    # Operations are people's acts, never replayed: each occurrence is its own message.
    notices.tell(session, case=step.case, event="step_operation", to=to,
                 key=key or f"step:{step.id}:{operation}:{uuid.uuid4().hex}", now=now, **ctx)


def _row(step: Step) -> dict[str, Any]:
    return {"step": step.id, "key": step.key, "case": step.case.number, "status": step.status,
            "assignee": step.assignee_id}


def _own_turn(session: Session, step: Step, person: Staff, operation: str,
              *, override: bool = False) -> signers.Turn:
    """The person's place on the step: its decider, or their approver's place (or, where
    allowed, a stand-in or an escalated level). A signer added or a delegate has their own
    part to play, not the step to hand on."""
    turn = signers.turn(session, step, person)
    if turn.how == "override" and override:
        return turn
    if turn.how == "principal" or (turn.row is not None and turn.row.kind == signers.APPROVER):
        return turn
    zh = LABELS[operation][0]
    why = ("替岗或升级层级只能直接处理" if turn.how == "override"
           else "加签人和受托人只处理自己的一环")
    raise Forbidden(f"as：{staff_label(session, person.id)}不能对步骤 {step.id}"
                    f"（{step.kind}）{zh}；"
                    f"规则（own_step）：{zh}由步骤的处理人本人（或会签中的审批人）发起，{why}"
                    f"；expected {_decider(session, step)}", field="as")


def _decider(session: Session, step: Step) -> str:
    if step.assignee_id:
        return staff_label(session, step.assignee_id)
    return f"a {step.role} of the case"


def _pending_added(session: Session, step: Step, anchor: int | None) -> list[Signer]:
    return [r for r in signers.rows(session, step) if r.status == signers.PENDING
            and r.kind in (signers.BEFORE, signers.AFTER, signers.DELEGATE)
            and r.anchor_id == anchor]


def _colleague(session: Session, step: Step, person: Staff, to: int | str,
               role: str | None = None) -> Staff:
    """Active staff of the case's community (rule reference, models.authority), not oneself."""
    target = authority.staff_of(session, step.case.community_id, to, field="to", role=role)
    if target.id == person.id:
        raise PropflowError(f"to：不能指定自己（{staff_label(session, person.id)}）；expected a "
                            "colleague's staff id", field="to")
    return target


def _take(step: Step, person: Staff, turn: signers.Turn) -> None:
    """Whoever acts on an unassigned step of their role takes it (it is then theirs)."""
    if turn.how == "principal" and step.assignee_id is None:
        step.assignee_id = step.claimed_by = person.id


# --- claim / unclaim -------------------------------------------------------------------------

def claim(session: Session, step: Step, person: Staff, now: datetime) -> dict[str, Any]:
    """认领: an unassigned step of the person's role becomes theirs."""
    _waiting(step)
    if signers.mode(step):
        raise Forbidden(f"step：步骤 {step.id} 是{signers.MODES[signers.mode(step) or '']}步骤；"
                        "规则（signers）：多人审批的步骤由各审批角色签署，不能认领；expected "
                        "`propflow steps decide` by one of its approvers", field="step")
    if step.assignee_id is not None:
        raise Conflict(f"step：步骤 {step.id} 已由{staff_label(session, step.assignee_id)}处理；"
                       "规则（claim）：只能认领未指派的步骤；expected a step listed under a role "
                       "with no assignee", field="step")
    if step.role not in roles_of(person, step.case.community_id):
        raise Forbidden(f"as：{staff_label(session, person.id)}不持有 {step.role} 角色；"
                        "规则（role）："
                        f"未指派的步骤由本项目持 {step.role} 角色者认领；expected a {step.role} "
                        "of the case's community", field="as")
    step.assignee_id = step.claimed_by = person.id
    audit(session, at=now, actor=f"staff:{person.id}", action="claimed", case_id=step.case_id,
          step=step.key, role=step.role)
    session.flush()
    return _row(step)


def unclaim(session: Session, step: Step, person: Staff, now: datetime) -> dict[str, Any]:
    """退回: a step the person claimed goes back to everyone of its role."""
    _waiting(step)
    if step.claimed_by != person.id or step.assignee_id != person.id:
        by = staff_label(session, step.claimed_by) if step.claimed_by else "a claimed step"
        raise Forbidden(f"as：{staff_label(session, person.id)}没有认领步骤 {step.id}；"
                        "规则（unclaim）："
                        "只有认领人可以退回自己认领的步骤，指派或转办来的步骤请转办；"
                        f"expected {by}", field="as")
    pending = _pending_added(session, step, None)
    if pending:
        raise Conflict(_pending_refusal(session, step, "unclaim", pending), field="step")
    step.assignee_id = step.claimed_by = None
    audit(session, at=now, actor=f"staff:{person.id}", action="unclaimed", case_id=step.case_id,
          step=step.key, role=step.role)
    session.flush()
    _tell(session, step, "unclaim", person, notices.step_recipients(session, step), "", now)
    return _row(step)


def _pending_refusal(session: Session, step: Step, rule: str, pending: list[Signer]) -> str:
    who = "、".join(signers.describe(session, r) for r in pending)
    return (f"step：步骤 {step.id} 还在等待加签或委派的人（{who}）；规则（{rule}）：有人正在"
            "处理您加出去的环节时不能交出步骤；expected their answer first")


# --- transfer, delegate, add a signer, copy ----------------------------------------------------

def transfer(session: Session, step: Step, person: Staff, to: int | str, reason: str,
             now: datetime) -> dict[str, Any]:
    """转办: a colleague holding the step's role (their place's role) takes it over."""
    _waiting(step)
    reason = _reason(reason)
    turn = _own_turn(session, step, person, "transfer", override=True)
    slot = turn.row
    role = (slot.role if slot is not None else None) or step.role
    if role == Role.OWNER:
        raise Forbidden(f"step：步骤 {step.id} 等待业主本人答复；规则（owner）：业主的步骤"
                        "不能转办；expected the front desk to record the owner's answer",
                        field="step")
    target = _colleague(session, step, person, to, role=role)
    pending = _pending_added(session, step, turn.anchor_id)
    if pending:
        raise Conflict(_pending_refusal(session, step, "transfer", pending), field="step")
    if slot is not None:
        before = slot.staff_id
        slot.staff_id = target.id
    else:
        before = step.assignee_id
        step.assignee_id, step.claimed_by = target.id, None
    audit(session, at=now, actor=f"staff:{person.id}", action="transferred",
          case_id=step.case_id, step=step.key, **{"from": before, "to": target.id},
          role=role, reason=reason, rule=turn.rule)
    session.flush()
    _tell(session, step, "transfer", person, [notices.staff_recipient(target)], reason, now)
    return _row(step) | {"to": target.id, "to_name": target.name}


def delegate(session: Session, step: Step, person: Staff, to: int | str, reason: str,
             now: datetime) -> dict[str, Any]:
    """委派: a colleague works the step; their answer is a proposal, the final word stays
    with the person (models.signers: DELEGATE)."""
    _waiting(step)
    reason = _reason(reason)
    turn = _own_turn(session, step, person, "delegate")
    target = _colleague(session, step, person, to)
    if any(r.kind == signers.DELEGATE for r in _pending_added(session, step, turn.anchor_id)):
        raise Conflict(f"step：步骤 {step.id} 已委派给他人，等待其答复；规则（delegate）：同一时间"
                       "只委派一人；expected their answer, or decide it yourself", field="step")
    _take(step, person, turn)
    row = _add(session, step, signers.DELEGATE, target, person, turn, now)
    audit(session, at=now, actor=f"staff:{person.id}", action="delegated", case_id=step.case_id,
          step=step.key, to=target.id, reason=reason)
    _tell(session, step, "delegate", person, [notices.staff_recipient(target)], reason, now)
    return _row(step) | {"to": target.id, "to_name": target.name, "signer": row.id}


def add_signer(session: Session, step: Step, person: Staff, to: int | str, position: str,
               reason: str, now: datetime) -> dict[str, Any]:
    """加签: someone signs before the person (then it returns to them) or after (the step
    moves on only once they approve too)."""
    _waiting(step)
    if position not in ("before", "after"):
        raise PropflowError(f"position：{position!r} 不是加签位置；expected before (前加签) or "
                            "after (后加签)", field="position")
    reason = _reason(reason)
    turn = _own_turn(session, step, person, f"add_signer_{position}")
    target = _colleague(session, step, person, to)
    if any(r.staff_id == target.id and r.status == signers.PENDING and r.kind != signers.CC
           for r in signers.rows(session, step)):
        raise Conflict(f"to：{staff_label(session, target.id)}已在此步骤等待签署；"
                       "规则（add_signer）："
                       "同一人不重复加签；expected someone else", field="to")
    _take(step, person, turn)
    kind = signers.BEFORE if position == "before" else signers.AFTER
    row = _add(session, step, kind, target, person, turn, now)
    audit(session, at=now, actor=f"staff:{person.id}", action="signer_added",
          case_id=step.case_id, step=step.key, to=target.id, position=position, reason=reason)
    _tell(session, step, f"add_signer_{position}", person, [notices.staff_recipient(target)],
          reason, now)
    return _row(step) | {"to": target.id, "to_name": target.name, "position": position,
                               "signer": row.id}


def _add(session: Session, step: Step, kind: str, target: Staff, person: Staff,
         turn: signers.Turn, now: datetime) -> Signer:
    held = signers.rows(session, step)
    row = Signer(step_id=step.id, kind=kind, staff_id=target.id, added_by=person.id,
                 anchor_id=turn.anchor_id, position=max((r.position for r in held), default=0),
                 status=signers.PENDING, values={}, comment="", created_at=now)
    session.add(row)
    session.flush()
    return row


def cc(session: Session, step: Step, person: Staff, to: list[int | str], reason: str,
       now: datetime) -> dict[str, Any]:
    """抄送: colleagues are told and may look at the step and its case; they may not decide."""
    reason = _reason(reason)
    if step.status == StepStatus.WAITING:
        signers.turn(session, step, person)  # whoever has a part in it may copy others
    elif not (step.decision and step.decision.decided_by == person.id):
        raise Forbidden(f"as：{staff_label(session, person.id)}不能抄送步骤 {step.id}；"
                        "规则（cc）：由步骤"
                        "的处理人抄送；expected its decider", field="as")
    if not to:
        raise PropflowError("to：请给出抄送人；expected one or more staff ids", field="to")
    already = {r.staff_id for r in signers.rows(session, step) if r.kind == signers.CC}
    targets: list[Staff] = []
    for staff_id in to:
        target = _colleague(session, step, person, staff_id)
        if target.id not in already and target not in targets:
            targets.append(target)
    for target in targets:
        session.add(Signer(step_id=step.id, kind=signers.CC, staff_id=target.id,
                           added_by=person.id, status=signers.PENDING, values={}, comment="",
                           created_at=now))
    audit(session, at=now, actor=f"staff:{person.id}", action="copied", case_id=step.case_id,
          step=step.key, to=[t.id for t in targets], reason=reason)
    session.flush()
    _tell(session, step, "cc", person, [notices.staff_recipient(t) for t in targets], reason, now)
    return _row(step) | {"to": [t.id for t in targets]}


def may_view(session: Session, step: Step, person: Staff) -> str | None:
    """Why the person may look at the step (and its case), or None: they may act on it, have
    a part in it, decided it, or were copied (抄送)."""
    if step.decision and step.decision.decided_by == person.id:
        return "decided"
    if any(r.staff_id == person.id for r in signers.rows(session, step)):
        return "cc" if signers.watching(session, step, person) else "signer"
    rule = authority.rule_allowing(step, person)
    return rule


# --- send back, withdraw -----------------------------------------------------------------------

def send_back(session: Session, step: Step, person: Staff, reason: str,
              now: datetime) -> dict[str, Any]:
    """驳回: back to the case's previous human step, for whoever decided it, with the reason.
    This step and any other opened since are cancelled as rewound; the run goes back through
    the procedure from the record (flows/human.py) and asks this step again afterwards."""
    _waiting(step)
    reason = _reason(reason, required=True)
    turn = _own_turn(session, step, person, "send_back", override=True)
    previous = _previous(session, step)
    if previous is None:
        raise Conflict(f"step：步骤 {step.id}（{step.kind}）之前没有已处理的人工步骤；规则"
                       "（send_back）：驳回退到本工单上一个已处理的步骤；expected a step that "
                       "follows a decided one", field="step")
    assert previous.decision is not None and previous.decided_at is not None
    since = _opened_since(session, step.case_id, previous)
    for other in since:
        _rewind(session, other, now)
    decider = session.get(Staff, previous.decision.decided_by) \
        if previous.decision.decided_by else None
    keep = decider if previous.role != Role.OWNER and decider and decider.active else None
    again = steps.reopen(session, previous, assignee_id=keep.id if keep else previous.assignee_id,
                         now=now)
    audit(session, at=now, actor=f"staff:{person.id}", action="sent_back", case_id=step.case_id,
          step=step.key, to_step=previous.key, reopened=again.key, reason=reason,
          cancelled=[s.key for s in since], rule=turn.rule)
    session.flush()
    told = [notices.staff_recipient(keep)] if keep else notices.step_recipients(session, again)
    _tell(session, again, "send_back", person, told, reason, now)
    return {"step": step.id, "key": step.key, "case": step.case.number, "status": step.status,
            "sent_back_to": previous.key, "reopened": again.id, "reopened_key": again.key,
            "assignee": again.assignee_id}


def _previous(session: Session, step: Step) -> Step | None:
    """The case's latest human step decided before this one opened (not one replaced since)."""
    return session.scalars(
        select(Step).where(Step.case_id == step.case_id, Step.id != step.id,
                           Step.status == StepStatus.DECIDED, Step.replaced_by.is_(None),
                           Step.decided_at <= step.opened_at)
        .order_by(Step.decided_at.desc(), Step.id.desc())).first()


def _opened_since(session: Session, case_id: int, decided: Step) -> list[Step]:
    """The steps the run opened after that decision: they follow from it."""
    return list(session.scalars(
        select(Step).where(Step.case_id == case_id, Step.id > decided.id,
                           Step.opened_at >= decided.decided_at)
        .order_by(Step.id)))


def _rewind(session: Session, step: Step, now: datetime) -> None:
    """Cancel a waiting step as rewound: asked again, it opens anew (models.steps.open_step)."""
    if step.status != StepStatus.WAITING:
        return
    taken = rowcount(session.execute(
        update(Step).where(Step.id == step.id, Step.status == StepStatus.WAITING)
        .values(status=StepStatus.CANCELLED, decided_at=now, rewound=True)
        .execution_options(synchronize_session=False)))
    if not taken:
        raise Conflict(f"step：步骤 {step.id}（{step.key}）刚被他人处理；expected to try again "
                       "after `propflow steps show`", field="step")
    for row in signers.rows(session, step):
        if row.status == signers.PENDING and row.kind != signers.CC:
            row.status = signers.CANCELLED
    session.refresh(step)


def withdraw(session: Session, step: Step, person: Staff, reason: str,
             now: datetime) -> dict[str, Any]:
    """撤回: the person's decision is taken back while the steps it led to are untouched
    (nobody decided or signed them): those are cancelled as rewound, and the step waits for
    the person again (a new instance, the record of the first kept)."""
    reason = _reason(reason)
    decision = step.decision
    if step.status != StepStatus.DECIDED or decision is None or step.replaced_by is not None:
        raise Conflict(f"step：步骤 {step.id}（{step.kind}）没有可撤回的决定 (status "
                       f"{step.status})；规则（withdraw）：只能撤回自己已作出的决定；expected a "
                       "decided step", field="step")
    if decision.decided_by != person.id:
        raise Forbidden(f"as：步骤 {step.id} 由{staff_label(session, decision.decided_by)}决定；"
                        "规则"
                        "（withdraw）：只有作出决定的人可以撤回；expected "
                        f"{staff_label(session, decision.decided_by)}", field="as")
    if step.case.status == CaseStatus.CLOSED:
        raise Conflict(f"step：工单 {step.case.number} 已关闭；规则（withdraw）：已关闭的工单不能"
                       "撤回；expected an open case", field="step")
    since = _opened_since(session, step.case_id, step)
    touched = [s for s in since if s.status != StepStatus.WAITING or any(
        r.status in (signers.SIGNED, signers.PROPOSED) for r in signers.rows(session, s))]
    if touched:
        raise Conflict(f"step：下一步 {touched[0].key} 已有人处理 (status {touched[0].status})；"
                       "规则（withdraw）：下一步未被处理时才能撤回；expected to ask "
                       f"{touched[0].key}'s decider to send it back (驳回) instead", field="step")
    if not since:
        raise Conflict("step：流程尚未进入下一步；规则（withdraw）：撤回取消下一步并让本步骤重新"
                       "等待，下一步开始后才能撤回；expected to try again in a moment "
                       "(`propflow steps list --case " + step.case.number + "`)", field="step")
    for other in since:
        _rewind(session, other, now)
    again = steps.reopen(session, step, assignee_id=person.id, now=now)
    audit(session, at=now, actor=f"staff:{person.id}", action="withdrawn",
          case_id=step.case_id, step=step.key, reopened=again.key, reason=reason,
          cancelled=[s.key for s in since], values=decision.values)
    session.flush()
    return {"step": step.id, "key": step.key, "case": step.case.number,
            "reopened": again.id, "reopened_key": again.key, "cancelled": [s.key for s in since],
            "assignee": again.assignee_id}


def after_signing(session: Session, step: Step, person: Staff, now: datetime) -> None:
    """After a signature that did not settle the step: whoever added a delegate or a signer
    before them is told it is theirs again, and whoever's turn it now is (the next approver
    in sequence, a signer added after) is told so, once."""
    held = signers.rows(session, step)
    done = [r for r in held if r.signed_by == person.id and r.added_by
            and r.kind in (signers.DELEGATE, signers.BEFORE) and r.signed_at == now]
    if done:
        adder = session.get(Staff, done[-1].added_by)
        if adder is not None:
            operation = "proposed" if done[-1].kind == signers.DELEGATE else "signed_before"
            _tell(session, step, operation, person, [notices.staff_recipient(adder)],
                  done[-1].comment, now)
    seq = signers.mode(step) == "sequence"
    for row in held:
        if row.kind not in (signers.APPROVER, signers.AFTER) or not row.created_at \
                or not signers.eligible(row, held, seq):
            continue
        if row.kind == signers.APPROVER and not seq:
            continue  # told when the step opened
        if row.staff_id:
            target = session.get(Staff, row.staff_id)
            to = [notices.staff_recipient(target)] if target else []
        else:
            to = notices.role_recipients(session, step.case, row.role or step.role)
        _tell(session, step, "your_turn", person, to, "", now, key=f"step:{step.id}:turn:{row.id}")
