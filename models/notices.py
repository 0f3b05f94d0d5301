"""Who hears about what: builds message context and writes the outbox rows for an event."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import labels
from core.policy import get_policy
from core.vocabulary import Role
from models.cases import Case, Step
from models.directory import people_in_role
from models.org import Staff, Unit
from models.outbox import Message, Recipient, notify, notify_many

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Policy


class CaseFacts(Protocol):
    """What a message reads of a case: a Case, or a batch's plain row of the cases table."""

    @property
    def id(self) -> int: ...
    @property
    def number(self) -> str: ...
    @property
    def procedure(self) -> str: ...
    @property
    def community_id(self) -> int: ...
    @property
    def unit_id(self) -> int | None: ...
    @property
    def category(self) -> str | None: ...
    @property
    def priority(self) -> str | None: ...
    @property
    def paid(self) -> bool: ...
    @property
    def reporter_name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def data(self) -> dict[str, Any] | None: ...


class StepFacts(Protocol):
    """What a message reads of a step: a Step, or a batch's plain rows (models.steps)."""

    @property
    def id(self) -> int: ...
    @property
    def case_id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def assignee_id(self) -> int | None: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def calendar(self) -> str: ...
    @property
    def context(self) -> dict[str, Any] | None: ...
    @property
    def case(self) -> CaseFacts: ...


def local(at: datetime | None, tz: str | None = None) -> str:
    if at is None:
        return ""
    return at.astimezone(ZoneInfo(tz or get_policy().timezone)).strftime("%Y-%m-%d %H:%M")


def staff_recipient(person: Staff) -> Recipient:
    return Recipient(key=f"staff:{person.id}", name=person.name, email=person.email,
                     mobile=person.phone)


def owner_recipient(case: Case) -> Recipient:
    return Recipient(key=f"owner:{case.reporter_phone}", name=case.reporter_name,
                     mobile=case.reporter_phone)


def case_context(session: Session, case: CaseFacts, lang: str,
                 policy: Policy | None = None) -> dict[str, Any]:
    unit = session.get(Unit, case.unit_id) if case.unit_id else None
    policy = policy or get_policy()
    proc = policy.procedures[case.procedure]
    category = proc.categories.get(case.category or "") or proc.kinds.get(case.category or "")
    return {
        "number": case.number,
        "procedure_label": labels.procedure(case.procedure, lang),
        "unit": unit.code if unit else "",
        "summary": case.description,
        "reporter": case.reporter_name,
        "category_label": category.label if category else (case.category or ""),
        "priority_label": labels.label(labels.PRIORITIES, case.priority, lang),
        "paid": case.paid,
        "first_responder": _first_responder_name(session, case),
        "location": (case.data or {}).get("location") or (unit.code if unit else ""),
        # A repair's convenient visit time, as the reporter gave it (方便维修的时间).
        "preferred_time": (case.data or {}).get("preferred_time") or "",
    }


def _first_responder_name(session: Session, case: CaseFacts) -> str:
    person = first_responder(session, case)
    return person.name if person else ""


def first_responder(session: Session, case: CaseFacts) -> Staff | None:
    """首问责任人: whoever received the case owns it to the end."""
    staff_id = (case.data or {}).get("first_responder")
    return session.get(Staff, staff_id) if staff_id else None


def with_first_responder(session: Session, case: CaseFacts, to: list[Recipient]) -> list[Recipient]:
    """The first responder is copied on everything that goes wrong with their case."""
    person = first_responder(session, case)
    if person and all(r.key != f"staff:{person.id}" for r in to):
        return [*to, staff_recipient(person)]
    return to


def step_context(session: Session, step: StepFacts, lang: str,
                 policy: Policy | None = None) -> dict[str, Any]:
    """What a message about the step says; a batch passes the policy it read once."""
    policy = policy or get_policy()
    ctx = case_context(session, step.case, lang, policy)
    ctx.update(
        step_id=step.id,
        step_label=labels.step(step.case.procedure, step.kind, lang),
        due=local(step.due_at, policy.timezone),
        calendar_label=labels.label(labels.CALENDARS, step.calendar, lang),
        duty=(step.context or {}).get("duty", ""),
        owner_step=step.role == Role.OWNER,
    )
    return ctx


def tell(
    session: Session, *, case: Case, event: str, to: list[Recipient], key: str, now: datetime,
    links: Callable[[Recipient], str] | None = None, **extra: Any,
) -> int:
    """`links`: each person's own one-tap link in the message (models.links.for_step)."""
    policy = get_policy()
    lang = policy.lang
    ctx = case_context(session, case, lang) | extra
    return notify(
        session, procedure=case.procedure, event=event, to=to, context=ctx, key=key, now=now,
        case_id=case.id, lang=lang, routes=policy.routes,
        channel_kinds={n: str(c.get("kind")) for n, c in policy.channels.items()},
        sms=policy.sms, links=links,
    )


def tell_many(session: Session, messages: list[Message], *, now: datetime) -> None:
    """tell() for a batch whose contexts are built (case_context included): one INSERT."""
    policy = get_policy()
    notify_many(session, messages, now=now, lang=policy.lang, routes=policy.routes,
                channel_kinds={n: str(c.get("kind")) for n, c in policy.channels.items()},
                sms=policy.sms)


class Lookups:
    """What the messages of a batch of steps look up, each kind fetched by one query: their
    units, assignees and first responders, and each community's holders of a role."""

    def __init__(self, session: Session, steps: Sequence[StepFacts]) -> None:
        cases = {step.case_id: step.case for step in steps}.values()
        units = {c.unit_id for c in cases if c.unit_id}
        staff = {s.assignee_id for s in steps if s.assignee_id}
        staff |= {(c.data or {})["first_responder"] for c in cases
                  if (c.data or {}).get("first_responder")}
        # Held here, so the session's identity map keeps them and session.get needs no query.
        self._held = [*session.scalars(select(Unit).where(Unit.id.in_(units))),
                      *session.scalars(select(Staff).where(Staff.id.in_(staff)))]
        self._holders: dict[tuple[int, str], list[Recipient]] = {}

    def role_recipients(self, session: Session, case: CaseFacts, role: str) -> list[Recipient]:
        key = (case.community_id, role)
        if key not in self._holders:
            self._holders[key] = role_recipients(session, case, role)
        return self._holders[key]


def opened_recipients(session: Session, step: Step) -> list[Recipient]:
    """Who hears that a step opened: an owner's step goes to the owner as an owner message
    and at once to the front desk, who records an answer given by phone (PROCEDURES.md §10)."""
    to = step_recipients(session, step)
    if step.role == Role.OWNER and not step.assignee_id:
        return [owner_recipient(step.case), *to]
    return to


def step_recipients(session: Session, step: StepFacts,
                    lookups: Lookups | None = None) -> list[Recipient]:
    """The staff who act on the step: the assignee, else everyone holding the step's role in
    the community. An owner is never sent a staff to-do: for an owner's step, the front desk
    (the owner's stand-in) hears its warnings and operations."""
    if step.assignee_id:
        person = session.get(Staff, step.assignee_id)
        return [staff_recipient(person)] if person else []
    role = step.role
    if role == Role.OWNER:
        role = next(iter(get_policy().stand_ins.get(Role.OWNER, [])), Role.CSR)
    if lookups:
        return lookups.role_recipients(session, step.case, role)
    return role_recipients(session, step.case, role)


def role_recipients(session: Session, case: CaseFacts, role: str) -> list[Recipient]:
    return [staff_recipient(p) for p in people_in_role(session, case.community_id, role)]
