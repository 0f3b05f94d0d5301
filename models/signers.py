"""Everyone with a part in a step besides its one decider, and whose turn it is.

A step is decided once (models.steps.decide writes its one Decision and the flow goes on).
Before that, others may have to sign: the policy's approvers of a multi-approver step (会签
all, 或签 any, 依次 in order), someone added before or after oneself (加签), a delegate whose
answer comes back as a proposal (委派); watchers are told and may look (抄送). Each is a row
here; a signature that does not yet settle the step is recorded on its row, and the step
settles — one Decision, as ever — once its rule is satisfied. The flow sees only that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.errors import Forbidden
from models import authority
from models.authority import staff_label
from models.cases import Step
from models.db import Base, UTCDateTime
from models.directory import roles_of
from models.org import Staff

# Kinds of row.
APPROVER = "approver"  # one signature the policy asks for (a role), in its mode
BEFORE = "before"  # 前加签: signs first, then the turn returns to whoever added them
AFTER = "after"  # 后加签: must approve after whoever added them, before the step settles
DELEGATE = "delegate"  # 委派: answers for whoever delegated; the answer is a proposal
CC = "cc"  # 抄送: told, may look, may not decide
PRINCIPAL = "principal"  # the decider's own answer, held while after-signers approve

# Statuses of a row.
PENDING, SIGNED, PROPOSED, CANCELLED = "pending", "signed", "proposed", "cancelled"

MODES = {"all": "会签", "any": "或签", "sequence": "依次"}
KIND_LABELS = {APPROVER: "审批人", BEFORE: "前加签", AFTER: "后加签", DELEGATE: "受托人",
               CC: "抄送", PRINCIPAL: "处理人"}


class Signer(Base):
    __tablename__ = "step_signers"
    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    role: Mapped[str | None] = mapped_column(String(40), nullable=True)  # an approver by role
    position: Mapped[int] = mapped_column(Integer, default=0)  # the policy's order
    # The row whose holder added this one (their approver slot); None: the step's decider.
    anchor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    added_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    comment: Mapped[str] = mapped_column(Text, default="")
    signed_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def rows(session: Session, step: Step) -> list[Signer]:
    return list(session.scalars(select(Signer).where(Signer.step_id == step.id)
                                .order_by(Signer.position, Signer.id)))


def mode(step: Step) -> str | None:
    """all / any / sequence for a multi-approver step (fixed when it opened), else None."""
    found = (step.context or {}).get("sign_mode")
    return str(found) if found else None


def approves(values: dict[str, Any]) -> bool:
    """A signature approves unless its form says no (approved or accepted false)."""
    return all(values.get(name) is not False for name in ("approved", "accepted"))


def add_approvers(session: Session, step: Step, roles: list[str], now: datetime) -> None:
    """The policy's approvers of a multi-approver step, written as it opens."""
    for i, role in enumerate(roles):
        session.add(Signer(step_id=step.id, kind=APPROVER, role=role, position=i,
                           status=PENDING, values={}, created_at=now))
    session.flush()


def first_asked(roles: list[str], mode_: str) -> list[str]:
    """Whom a multi-approver step asks as it opens: every role, or in sequence the first."""
    return roles[:1] if mode_ == "sequence" else list(dict.fromkeys(roles))


@dataclass(frozen=True)
class Turn:
    """What a person may do on a step now.

    how: "principal" (the step's own decider: its assignee or, unassigned, its role),
    "override" (a stand-in or an escalated level: their decision settles the step, whoever
    else was still to sign), or "row" (their own row: an approver, before, after, delegate).
    """

    how: str
    rule: str
    row: Signer | None = None

    @property
    def anchor_id(self) -> int | None:
        """Where rows this person adds hang: their approver slot, or the decider's place."""
        return self.row.id if self.row is not None and self.row.kind == APPROVER else None


def _theirs(step: Step, row: Signer, person: Staff, held: list[Signer]) -> bool:
    if row.staff_id is not None:
        return row.staff_id == person.id
    if row.kind != APPROVER or row.role not in roles_of(person, step.case.community_id):
        return False
    # One person fills one approver's place: 会签 by two roles needs two people.
    return not any(r.kind == APPROVER and r.signed_by == person.id for r in held)


def _blocked_by(row: Signer | None, held: list[Signer]) -> list[Signer]:
    """What a row (None: the decider) waits for before it may sign."""
    anchor = row.id if row is not None else None
    waits = [r for r in held if r.status == PENDING and r.kind == BEFORE and r.anchor_id == anchor]
    if row is None:
        return waits
    if row.kind == AFTER:
        if row.anchor_id is None:
            done = any(r.kind == PRINCIPAL and r.status == SIGNED for r in held)
            return [] if done else [row]
        slot = next((r for r in held if r.id == row.anchor_id), None)
        return [] if slot is None or slot.status == SIGNED else [slot]
    if row.kind == APPROVER and row.status == PENDING:
        waits += [r for r in held if r.kind == APPROVER and r.status == PENDING
                  and r.position < row.position]
    return waits


def eligible(row: Signer, held: list[Signer], seq: bool) -> bool:
    if row.status != PENDING or row.kind in (CC, PRINCIPAL):
        return False
    blockers = _blocked_by(row, held)
    if row.kind == APPROVER and not seq:
        blockers = [b for b in blockers if b.kind != APPROVER]
    return not blockers


def turn(session: Session, step: Step, person: Staff) -> Turn:
    """What the person may do on the step now, or Forbidden naming the rule that says no."""
    held = rows(session, step)
    seq = mode(step) == "sequence"
    for row in held:
        if eligible(row, held, seq) and _theirs(step, row, person, held):
            if row.kind == APPROVER:
                authority.check_not_proposer(session, step, person)
            return Turn("row", row.kind, row)
    rule = authority.rule_allowing(step, person)
    if rule in ("stand_in", "chain", "skip_level"):  # skip_level: an emergency (越级)
        authority.check_not_proposer(session, step, person)
        return Turn("override", rule)
    multi = any(r.kind == APPROVER for r in held)
    if rule in ("assignee", "role") and not multi:
        authority.check_not_proposer(session, step, person)
        first = _blocked_by(None, held)
        if first:
            raise Forbidden(_refused(session, step, person, "add_signer_before",
                                     "前加签的人须先处理，再回到您", first), field="as")
        after = [r for r in held if r.kind == AFTER and r.anchor_id is None
                 and r.status == PENDING]
        if any(r.kind == PRINCIPAL and r.status == SIGNED for r in held):
            raise Forbidden(_refused(session, step, person, "add_signer_after",
                                     "您已处理，等待后加签的人审批", after), field="as")
        return Turn("principal", rule)
    raise Forbidden(_why_not(session, step, person, held, seq, multi), field="as")


def _refused(session: Session, step: Step, person: Staff, rule: str, why: str,
             waiting: list[Signer]) -> str:
    who = "、".join(describe(session, r) for r in waiting) or "-"
    return (f"as：{staff_label(session, person.id)}现在不能处理步骤 {step.id}（{step.kind}）；"
            f"规则（{rule}）：{why}；expected {who} first")


def describe(session: Session, row: Signer) -> str:
    if row.staff_id:
        return f"{staff_label(session, row.staff_id)}[{KIND_LABELS.get(row.kind, row.kind)}]"
    return f"{row.role} 角色[{KIND_LABELS.get(row.kind, row.kind)}]"


def _why_not(session: Session, step: Step, person: Staff, held: list[Signer], seq: bool,
             multi: bool) -> str:
    mine = [r for r in held if r.staff_id == person.id or (
        r.staff_id is None and r.kind == APPROVER
        and r.role in roles_of(person, step.case.community_id))]
    if any(r.kind == CC for r in mine) and not any(r.kind != CC for r in mine):
        up = [describe(session, r) for r in held if r.status == PENDING and r.kind != CC]
        return (f"as：{staff_label(session, person.id)}是步骤 {step.id}（{step.kind}）的抄送人；"
                "规则（cc）：抄送人只能查看，不能处理；expected the step's decider "
                f"({', '.join(up) or step.role})")
    for row in mine:
        if row.status == PENDING and row.kind != CC:
            blockers = _blocked_by(row, held)
            rule = {AFTER: "add_signer_after", APPROVER: "sequence" if seq else "add_signer_before"
                    }.get(row.kind, "add_signer_before")
            why = {AFTER: "后加签须在加签人处理之后", APPROVER: "依次审批，尚未轮到您"
                   if any(b.kind == APPROVER for b in blockers) else "前加签的人须先处理"
                   }.get(row.kind, "尚未轮到您")
            if row.kind == AFTER and row.anchor_id is None:  # waits for whoever added them
                return (f"as：{staff_label(session, person.id)}现在不能处理步骤 {step.id}"
                        f"（{step.kind}）；规则（{rule}）：{why}；expected "
                        f"{staff_label(session, row.added_by)} first")
            return _refused(session, step, person, rule, why, blockers)
    if any(r.kind == APPROVER and r.signed_by == person.id for r in held):
        waiting = [r for r in held if r.status == PENDING and r.kind in (APPROVER, AFTER)]
        return _refused(session, step, person, "signed", "您已签署此步骤，每人只签一次", waiting)
    if multi:
        roles = [r.role for r in held if r.kind == APPROVER]
        return (f"as：{staff_label(session, person.id)}无权处理步骤 {step.id}（{step.kind}）；"
                f"规则（signers）：{MODES.get(mode(step) or '', '')}步骤由策略列出的审批角色签署"
                f"（{mode(step)}: {roles}），或由已升级到的层级处理；expected a holder of one of "
                f"{roles} who has not signed yet")
    authority.check_decider(session, step, person)  # raises, naming the rule
    raise Forbidden(f"as：{staff_label(session, person.id)}无权处理步骤 {step.id}", field="as")


def proposal(session: Session, step: Step, turn_: Turn) -> Signer | None:
    """A delegate's answer waiting for the final word of whoever delegated."""
    if turn_.how == "override":
        return None
    anchor = turn_.anchor_id if turn_.how == "row" else None
    if turn_.how == "row" and (turn_.row is None or turn_.row.kind != APPROVER):
        return None
    found = [r for r in rows(session, step) if r.kind == DELEGATE and r.status == PROPOSED
             and r.anchor_id == anchor]
    return found[-1] if found else None


@dataclass(frozen=True)
class Settle:
    """The step's one decision: whose, and what it says."""

    by: int
    values: dict[str, Any]
    comment: str


def sign(session: Session, step: Step, turn_: Turn, person: Staff, values: dict[str, Any],
         comment: str, now: datetime) -> Settle | None:
    """Record the person's part; the Settle when the step's rule is now satisfied."""
    held = rows(session, step)
    if turn_.how == "override":
        _cancel(held, lambda r: r.status == PENDING and r.kind != CC)
        return Settle(person.id, values, comment)
    if turn_.how == "principal":
        _cancel(held, lambda r: r.status == PENDING and r.kind == DELEGATE and r.anchor_id is None)
        if any(r.kind == AFTER and r.anchor_id is None and r.status == PENDING for r in held):
            session.add(Signer(step_id=step.id, kind=PRINCIPAL, staff_id=person.id,
                               status=SIGNED, values=values, comment=comment,
                               signed_by=person.id, signed_at=now, created_at=now))
            session.flush()
            return None
        return Settle(person.id, values, comment)
    row = turn_.row
    assert row is not None
    row.values, row.comment, row.signed_by, row.signed_at = values, comment, person.id, now
    if row.kind == DELEGATE:
        row.status = PROPOSED
        session.flush()
        return None
    row.status = SIGNED
    if row.kind == APPROVER:
        _cancel(held, lambda r: r.status == PENDING and r.kind == DELEGATE
                and r.anchor_id == row.id)
    session.flush()
    if row.kind == BEFORE:
        return None
    if not approves(values):  # one no settles an approval: 会签, 依次, and after-signers alike
        _cancel(held, lambda r: r.status == PENDING and r.kind != CC)
        return Settle(person.id, values, comment)
    return _settled(step, held)


def _settled(step: Step, held: list[Signer]) -> Settle | None:
    approvers = [r for r in held if r.kind == APPROVER and r.status != CANCELLED]
    if approvers:
        signed = [r for r in approvers if r.status == SIGNED]
        if not signed or (mode(step) != "any" and len(signed) < len(approvers)):
            return None
        source = signed[-1]  # the last listed approver who signed
    else:
        principal = [r for r in held if r.kind == PRINCIPAL and r.status == SIGNED]
        if not principal:
            return None
        source = principal[-1]
    done = {r.id for r in held if r.status == SIGNED}
    if any(r.kind == AFTER and r.status == PENDING and (
            r.anchor_id in done or (r.anchor_id is None and not approvers)) for r in held):
        return None
    _cancel(held, lambda r: r.status == PENDING and r.kind != CC)
    assert source.signed_by is not None
    return Settle(source.signed_by, dict(source.values), source.comment)


def _cancel(held: list[Signer], which: Any) -> None:
    for row in held:
        if which(row):
            row.status = CANCELLED


def waiting_for(session: Session, step: Step) -> list[dict[str, Any]]:
    """Whose signature the step waits for now (besides an override)."""
    held = rows(session, step)
    seq = mode(step) == "sequence"
    out = [{"kind": r.kind, "staff": r.staff_id, "role": r.role, "who": describe(session, r)}
           for r in held if eligible(r, held, seq)]
    principal_waits = not any(r.kind == APPROVER for r in held) and not _blocked_by(None, held) \
        and not any(r.kind == PRINCIPAL and r.status == SIGNED for r in held)
    if principal_waits:
        out.append({"kind": PRINCIPAL, "staff": step.assignee_id, "role": step.role,
                    "who": staff_label(session, step.assignee_id) if step.assignee_id
                    else f"{step.role} 角色"})
    return out


def has_turn(session: Session, step: Step, person: Staff) -> bool:
    """A row of theirs is up now (an approver's place, a signer added, a delegation)."""
    held = rows(session, step)
    seq = mode(step) == "sequence"
    return any(eligible(r, held, seq) and _theirs(step, r, person, held) for r in held)


def steps_with_part(session: Session, person: Staff, step_ids: list[int]) -> set[int]:
    """Of these steps, those where the person may have a signature to give: a row of theirs,
    or an approver's place by role, still pending (one query for a whole list)."""
    if not step_ids:
        return set()
    return set(session.scalars(select(Signer.step_id).where(
        Signer.step_id.in_(step_ids), Signer.status == PENDING, Signer.kind != CC,
        (Signer.staff_id == person.id) | Signer.staff_id.is_(None))))


def copied_to(session: Session, person: Staff) -> set[int]:
    """The steps the person was copied on (抄送)."""
    return set(session.scalars(select(Signer.step_id).where(
        Signer.kind == CC, Signer.staff_id == person.id)))


def watching(session: Session, step: Step, person: Staff) -> bool:
    return any(r.kind == CC and r.staff_id == person.id for r in rows(session, step))


def shown(session: Session, step: Step) -> list[dict[str, Any]]:
    """The rows as `steps show` gives them."""
    return [{"id": r.id, "kind": r.kind, "label": KIND_LABELS.get(r.kind, r.kind),
             "staff": r.staff_id, "role": r.role, "status": r.status, "values": r.values,
             "comment": r.comment, "signed_by": r.signed_by, "added_by": r.added_by,
             "anchor": r.anchor_id} for r in rows(session, step)]
