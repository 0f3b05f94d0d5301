"""The rules of a human step: opening it, who may decide it, once; lapses and warnings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, select, update
from sqlalchemy.orm import Session

from core import labels
from core.errors import Conflict, Forbidden
from core.policy import get_policy
from core.roles import LAST_RESORT
from core.vocabulary import Role, StepStatus
from models import authority, links, notices
from models.authority import chain_of
from models.cases import Case, Decision, Escalation, Step, mark_decided, step_by_key
from models.db import insert_rows, rowcount, set_each
from models.org import Staff
from models.outbox import Message, Recipient, audit, audit_many
from models.signers import PRINCIPAL, add_approvers, first_asked, proposal, sign, turn

log = logging.getLogger(__name__)


def open_step(
    session: Session, *, case: Case, key: str, kind: str, role: str, now: datetime,
    assignee_id: int | None = None, context: dict[str, Any] | None = None,
    due_at: datetime | None = None,
) -> Step:
    """Write the step (window on its calendar), tell the assignee. Same key: same step —
    or the one that replaced it since (sent back, withdrawn), or a new one when a send-back
    or a withdrawal cancelled it (models.operations)."""
    existing = step_by_key(session, case.id, key)
    if existing is not None and existing.rewound:
        return reopen(session, existing, assignee_id=assignee_id, now=now, due_at=due_at)
    if existing:
        return existing
    policy = get_policy()
    rule = policy.rule(case.procedure, kind, case.priority)
    if rule.signers is not None:  # the mode is the step's own, whatever the policy says later
        context = {**(context or {}), "sign_mode": rule.signers.mode}
    calendar = policy.business_calendar()
    if due_at is not None:  # a fixed time (a visit's countdown), not a window from now
        due = due_at
        window = max(due - now, timedelta(0))
        warn = now + window * policy.warning_threshold
    elif rule.workdays:  # "within 2 working days": to the end of the second working day
        due = calendar.add_workdays(now, rule.workdays)
        warn = now + (due - now) * policy.warning_threshold
        window = due - now
    else:
        assert rule.window is not None
        window = rule.window
        due = calendar.add(now, window, rule.calendar)
        warn = calendar.add(now, window * policy.warning_threshold, rule.calendar)
    step = Step(
        case_id=case.id, key=key, kind=kind, role=role, assignee_id=assignee_id,
        calendar=rule.calendar, window_seconds=int(window.total_seconds()),
        on_lapse=rule.on_lapse, opened_at=now, due_at=due, warn_at=warn, level=0,
        context=context or {},
    )
    session.add(step)
    session.flush()
    if rule.signers is not None:
        add_approvers(session, step, rule.signers.roles, now)
    audit(session, at=now, actor="system", action="step_opened", case_id=case.id,
          step=key, role=role, assignee=assignee_id, due_at=due.isoformat())
    to = notices.opened_recipients(session, step)  # an owner's step: the owner and the desk
    if rule.signers is not None:  # every approver asked at once, or in sequence the first
        to = [r for role in first_asked(rule.signers.roles, rule.signers.mode)
              for r in notices.role_recipients(session, case, role)]
    notices.tell(session, case=case, event="step_opened", to=to,
                 key=f"step:{step.id}:opened", now=now, links=links.for_step(session, step, now),
                 **notices.step_context(session, step, get_policy().lang))
    return step


def reopen(session: Session, step: Step, *, assignee_id: int | None, now: datetime,
           due_at: datetime | None = None) -> Step:
    """A new instance of a step sent back or withdrawn (key accept#1~1, ~2, ...), with a new
    window (or the fixed due time the flow asks it with); the old one names it, so the flow
    asking the old key gets this one."""
    base = step.key.split("~")[0]
    taken = set(session.scalars(select(Step.key).where(Step.case_id == step.case_id)))
    n = 1
    while f"{base}~{n}" in taken:
        n += 1
    context = {k: v for k, v in (step.context or {}).items() if k != "sign_mode"}
    new = open_step(session, case=step.case, key=f"{base}~{n}", kind=step.kind, role=step.role,
                    now=now, assignee_id=assignee_id, context=context, due_at=due_at)
    step.replaced_by = new.id
    session.flush()
    return new


def may_decide(step: Step, person: Staff) -> bool:
    """Whether the person may decide the step, by the rules of models.authority."""
    return authority.rule_allowing(step, person) is not None


def decide(
    session: Session, *, step: Step, person: Staff, values: dict[str, Any], now: datetime,
    comment: str = "", channel: str = "cli", override: bool = False,
) -> Decision | None:
    """Store a decision; the run is resumed after this commits. None when it is one
    signature of several and the step still waits for others (models.signers)."""
    # Signatures of one step are taken one at a time: of two approvers signing at once,
    # the second sees the first and settles the step (SQLite: BEGIN IMMEDIATE already).
    session.execute(select(Step.id).where(Step.id == step.id).with_for_update())
    session.refresh(step)
    if step.status != StepStatus.WAITING:
        by = step.decision.decided_by if step.decision else None
        raise Conflict(f"step {step.id}（{step.kind}）已处理 (status {step.status}"
                       f"{f', by staff {by}' if by else ''})；一个步骤只能决定一次；"
                       "expected a waiting step from `propflow steps list`", field="step")
    who = turn(session, step, person)
    proposed = proposal(session, step, who)
    if proposed is not None and not values:  # the delegate's answer, taken as it stands
        values = dict(proposed.values)
    from models.forms import form_key, validate_form  # pydantic forms: only a decision needs them

    checked = validate_form(form_key(step.case.procedure, step.kind), values)
    if checked.get("reassign_to") is not None and who.rule == "assignee":
        raise Forbidden("reassign_to：被指派人不能自行改派；规则（stand_in）：改派由策略指定的"
                        "替岗主管或已升级到的层级决定；expected a supervisor's decision",
                        field="reassign_to")
    authority.check_references(session, step, checked)
    settle = sign(session, step, who, person, checked, comment, now)
    if settle is None or settle.by != person.id:  # their signature, not (or not yet) the decision
        audit(session, at=now, actor=f"staff:{person.id}", action="signed",
              case_id=step.case_id, step=step.key, part=who.row.kind if who.row else PRINCIPAL,
              values=checked, comment=comment, channel=channel)
    if settle is None:
        session.flush()
        return None
    return settle_step(session, step, by=settle.by, values=settle.values,
                       comment=settle.comment, now=now, channel=channel, override=override)


def settle_step(session: Session, step: Step, *, by: int, values: dict[str, Any],
                comment: str, now: datetime, channel: str, override: bool) -> Decision:
    """The step's one decision: written once, guarded by its status."""
    if not mark_decided(session, step, now):
        raise Conflict(f"step {step.id} 刚被他人处理；一个步骤只能决定一次；"
                       "expected a waiting step from `propflow steps list`", field="step")
    decision = Decision(
        step_id=step.id, decided_by=by, channel=channel, values=values,
        comment=comment, override=override, created_at=now,
        on_behalf_of_owner=step.role == Role.OWNER,
    )
    session.add(decision)
    audit(session, at=now, actor=f"staff:{by}", action="decided", case_id=step.case_id,
          step=step.key, values=values, comment=comment, channel=channel, override=override)
    session.flush()
    session.refresh(step)
    return decision


@dataclass(frozen=True)
class Lapse:
    step_id: int
    case_id: int
    flow_run_id: str | None
    level: int | None  # None when the step expired instead of escalating
    escalation_id: int | None = None


def due_ids(session: Session, now: datetime) -> list[int]:
    """Steps past due now, most overdue first: the snapshot one SLA pass works through."""
    return list(session.scalars(select(Step.id).where(
        Step.status == StepStatus.WAITING, Step.due_at <= now).order_by(Step.due_at, Step.id)))


def warn_ids(session: Session, now: datetime) -> list[int]:
    return list(session.scalars(select(Step.id).where(
        Step.status == StepStatus.WAITING, Step.level == 0, Step.warn_at.is_not(None),
        Step.warn_at <= now, Step.due_at > now).order_by(Step.warn_at, Step.id)))


@dataclass(frozen=True, slots=True)
class StepRow:
    """A step's columns as a batch's messages read them (notices.StepFacts), with its case's
    row: plain rows, no ORM objects, as 10,000 warnings would make 20,000 of them."""

    id: int
    case_id: int
    key: str
    kind: str
    role: str
    assignee_id: int | None
    due_at: datetime
    calendar: str
    context: dict[str, Any] | None
    case: notices.CaseFacts


def _rows(session: Session, ids: list[int]) -> list[StepRow]:
    """The steps as plain rows, in one query: each row carries its case's columns under
    their own names, so it stands for the case as well."""
    rows = session.execute(select(
        Step.id.label("step_id"), Step.key, Step.kind, Step.role, Step.assignee_id.label(
            "step_assignee_id"), Step.due_at, Step.calendar, Step.context, *Case.__table__.c)
        .join(Case, Step.case_id == Case.id).where(Step.id.in_(ids)).order_by(Step.id)).all()
    return [StepRow(r.step_id, r.id, r.key, r.kind, r.role, r.step_assignee_id, r.due_at,
                    r.calendar, r.context, r) for r in rows]


def _claim(session: Session, statement: Update) -> set[int]:
    """Run a guarded UPDATE of steps; the ids it changed are the ones this clock won."""
    return set(session.scalars(statement.returning(Step.id)
                               .execution_options(synchronize_session=False)))


def _chain(memo: dict[tuple[str, ...], list[str]], procedure: str, kind: str,
           priority: str | None, role: str) -> list[str]:
    key = (procedure, kind, priority or "", role)
    if key not in memo:
        # chain_of reads only these four: a stand-in step carrying them asks it once a group.
        memo[key] = chain_of(Step(kind=kind, role=role, case=Case(
            procedure=procedure, priority=priority)))
    return memo[key]


def claim_lapses(session: Session, now: datetime, worker: str, ids: list[int]) -> list[Lapse]:
    """Claim these steps' lapses with a few statements over the batch. Each claim is an UPDATE
    guarded by the step's status (and level) that returns the ids it changed: of two clocks
    only one takes a lapse. New windows are worked out in Python, per step's calendar."""
    if not ids:
        return []
    policy = get_policy()
    calendar = policy.business_calendar()
    rows = session.execute(
        select(Step.id, Step.case_id, Step.key, Step.kind, Step.role, Step.level, Step.due_at,
               Step.calendar, Step.on_lapse, Case.procedure, Case.priority, Case.flow_run_id)
        .join(Case, Step.case_id == Case.id)
        .where(Step.id.in_(ids), Step.status == StepStatus.WAITING, Step.due_at <= now)
        .order_by(Step.id).with_for_update(of=Step, skip_locked=True)).all()
    # Not the steps decided, or claimed by another clock, since the snapshot. On PostgreSQL
    # the batch is locked here in id order, and a step another clock holds is skipped (that
    # clock has it): the claims below then never wait, so two clocks cannot deadlock.
    # SQLite has one writer at a time: there the guarded UPDATEs are the whole claim.
    chains: dict[tuple[str, ...], list[str]] = {}
    expiring: list[int] = []
    climbing: dict[int, dict[int, tuple[str, datetime]]] = {}  # level: {step: (role, new due)}
    for row in rows:
        if row.on_lapse == "expire":
            expiring.append(row.id)
            continue
        chain = _chain(chains, row.procedure, row.kind, row.priority, row.role)
        if row.level >= len(chain):
            continue  # the top of the chain already has it; the breach stays recorded
        role = chain[row.level]
        due = calendar.add(row.due_at, policy.level_window(role, row.procedure), row.calendar)
        climbing.setdefault(row.level, {})[row.id] = (role, due)
    expired = _claim(session, update(Step).where(
        Step.id.in_(expiring), Step.status == StepStatus.WAITING).values(
        status=StepStatus.LAPSED, breached=True, decided_at=now)) if expiring else set()
    reached: dict[int, tuple[int, str]] = {}  # step: (level reached, its role)
    for level, plan in climbing.items():
        won = _claim(session, update(Step).where(
            Step.id.in_(plan), Step.level == level, Step.status == StepStatus.WAITING).values(
            level=level + 1, breached=True, warn_at=None))
        reached.update({i: (level + 1, plan[i][0]) for i in won})
    # Each step's own new window, in the same transaction as its claim.
    set_each(session, Step.__table__.c.due_at, {
        i: due for plan in climbing.values() for i, (_, due) in plan.items() if i in reached})
    lapsed_at = {row.id: row.due_at for row in rows}
    escalation_ids: dict[int, int] = {}
    if reached:
        # One INSERT, then the ids: on PostgreSQL an INSERT ... RETURNING of many rows is
        # several times slower than the driver's pipelined executemany, itself slower
        # than one INSERT from arrays (insert_rows).
        insert_rows(session, Escalation.__table__, [
            dict(step_id=i, level=level, to_role=role, lapsed_at=lapsed_at[i], claimed_at=now,
                 claimed_by=worker) for i, (level, role) in sorted(reached.items())])
        escalation_ids = {step_id: escalation_id for step_id, level, escalation_id in
                          session.execute(select(Escalation.step_id, Escalation.level,
                                                 Escalation.id)
                                          .where(Escalation.step_id.in_(reached)))
                          if level == reached[step_id][0]}
    claimed: list[Lapse] = []
    events: list[dict[str, Any]] = []
    for row in rows:
        if row.id in expired:
            events.append(dict(at=now, actor=worker, action="step_expired", case_id=row.case_id,
                               detail=dict(step=row.key)))
            claimed.append(Lapse(row.id, row.case_id, row.flow_run_id, None))
        elif row.id in reached:
            level, role = reached[row.id]
            events.append(dict(at=now, actor=worker, action="lapsed", case_id=row.case_id,
                               detail=dict(step=row.key, level=level, to_role=role)))
            claimed.append(Lapse(row.id, row.case_id, row.flow_run_id, level,
                                 escalation_ids[row.id]))
    audit_many(session, events)
    return claimed


def claim_warnings(session: Session, now: datetime, worker: str, ids: list[int]) -> int:
    """Tell the assignee once when a step has used its warning share of the window. The
    batch is claimed by one UPDATE (clearing warn_at), its messages and audit rows written
    by one INSERT each; each message is rendered on its own."""
    if not ids:
        return 0
    due = (Step.status == StepStatus.WAITING, Step.level == 0, Step.warn_at.is_not(None),
           Step.warn_at <= now)
    # Locked in id order, skipping any another clock holds, as in claim_lapses.
    mine = list(session.scalars(select(Step.id).where(Step.id.in_(ids), *due)
                                .order_by(Step.id).with_for_update(skip_locked=True)))
    if not mine:
        return 0
    won = _claim(session, update(Step).where(Step.id.in_(mine), *due).values(warn_at=None))
    if not won:
        return 0
    policy = get_policy()
    lang, percent = policy.lang, int(policy.warning_threshold * 100)
    batch = _rows(session, sorted(won))
    lookups = notices.Lookups(session, batch)
    chains: dict[tuple[str, ...], list[str]] = {}
    messages: list[Message] = []
    minted: list[dict[str, Any]] = []  # the warnings' one-tap links, written at once
    events: list[dict[str, Any]] = []
    for step in batch:
        chain = _chain(chains, step.case.procedure, step.kind, step.case.priority, step.role)
        ctx = notices.step_context(session, step, lang, policy)
        ctx.update(percent=percent, next_role_label=labels.role(chain[0] if chain else None, lang))
        to = notices.step_recipients(session, step, lookups)
        messages.append(Message(
            step.case.procedure, "warning", notices.with_first_responder(session, step.case, to),
            ctx, key=f"step:{step.id}:warning", case_id=step.case_id,
            links=links.for_step(session, step, now, minted, policy)))
        events.append(dict(at=now, actor=worker, action="warned", case_id=step.case_id,
                           detail=dict(step=step.key)))
    notices.tell_many(session, messages, now=now)
    links.write(session, minted)
    audit_many(session, events)
    return len(batch)


def record_escalation(session: Session, escalation: Escalation, now: datetime) -> list[str]:
    """Tell the level the lapse reached (done by the case's flow run); returns who was told.

    A level that nobody active holds in the case's community passes the lapse on at once to
    the next level of the chain that has someone, else to company_cs; the step climbs to
    that level so whoever is told may decide. Audited and logged: never silent.
    """
    step = escalation.step
    lang = get_policy().lang
    chain = chain_of(step)
    role, level = escalation.to_role or "", escalation.level
    reached = notices.role_recipients(session, step.case, role)
    if not reached:
        role, level, reached = _staffed_level(session, step, chain, escalation)
        if escalation.handled_at is None:
            _unstaffed(session, step, escalation, role if reached else None, level, now)
    to = notices.with_first_responder(session, step.case, reached)
    assignee = session.get(Staff, step.assignee_id) if step.assignee_id else None
    ctx = notices.step_context(session, step, lang)
    nxt = chain[level] if level < len(chain) else None
    ctx.update(
        role_label=labels.role(role, lang), level=level,
        lapsed=notices.local(escalation.lapsed_at),
        assignee=assignee.name if assignee else labels.role(step.role, lang),
        next_role_label=labels.role(nxt, lang),
        unstaffed_role_label=labels.role(escalation.to_role, lang) if role != escalation.to_role
        else "",
    )
    notices.tell(session, case=step.case, event="escalated", to=to,
                 key=f"escalation:{escalation.id}", now=now,
                 links=links.for_step(session, step, now), **ctx)
    if escalation.handled_at is None:
        escalation.handled_at = now
        audit(session, at=now, actor="flow", action="escalated", case_id=step.case_id,
              step=step.key, level=escalation.level, to_role=escalation.to_role,
              told=[r.key for r in to])
    return [r.name for r in to]


def _staffed_level(session: Session, step: Step, chain: list[str],
                   escalation: Escalation) -> tuple[str, int, list[Recipient]]:
    """The first level above a vacant one that has someone: (role, level, recipients)."""
    above = [(chain[i], i + 1) for i in range(escalation.level, len(chain))]
    if LAST_RESORT not in chain[escalation.level - 1:]:
        above.append((LAST_RESORT, max(len(chain), escalation.level)))
    for role, level in above:
        reached = notices.role_recipients(session, step.case, role)
        if reached:
            return role, level, reached
    return escalation.to_role or "", escalation.level, []


def _unstaffed(session: Session, step: Step, escalation: Escalation, told_role: str | None,
               level: int, now: datetime) -> None:
    case = step.case
    audit(session, at=now, actor="flow", action="escalation_unstaffed", case_id=case.id,
          step=step.key, level=escalation.level, role=escalation.to_role,
          told_role=told_role, told_level=level if told_role else None)
    if told_role is None:
        log.error("%s %s 超时升级至 %s，但本项目及公司均无在职人员可通知 (nobody to tell)；"
                  "expected staff holding a role of the chain", case.number, step.key,
                  escalation.to_role)
        return
    log.warning("%s %s 超时升级至 %s，本项目无在职人员 (role vacant)；改为通知 %s（第 %s 级）",
                case.number, step.key, escalation.to_role, told_role, level)
    if level > escalation.level:  # whoever is told may decide at their own level, now
        policy = get_policy()
        due = policy.business_calendar().add(
            escalation.lapsed_at, policy.level_window(told_role, case.procedure), step.calendar)
        session.execute(
            update(Step).where(Step.id == step.id, Step.level == escalation.level,
                               Step.status == StepStatus.WAITING)
            .values(level=level, due_at=due).execution_options(synchronize_session=False))


def cancel(session: Session, step: Step, reason: str, now: datetime) -> None:
    taken = rowcount(session.execute(
        update(Step).where(Step.id == step.id, Step.status == StepStatus.WAITING)
        .values(status=StepStatus.CANCELLED, decided_at=now)
        .execution_options(synchronize_session=False)
    ))
    if taken:
        audit(session, at=now, actor="flow", action="step_cancelled", case_id=step.case_id,
              step=step.key, reason=reason)
