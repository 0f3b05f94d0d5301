"""Notifications outbox and audit trail, written in the transaction of their event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jinja2 import Template
from sqlalchemy import JSON, ForeignKey, Integer, String, Text, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.channels import SMS_KINDS
from core.render import Rendered, render_with, template_for
from models.db import Base, UTCDateTime, insert_rows

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Sms


class Notification(Base):
    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    # Same event written twice (a replayed flow) must not notify twice.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True, index=True)
    event: Mapped[str] = mapped_column(String(60))
    recipient: Mapped[str] = mapped_column(String(80))  # staff:12, resident:3, group:ops
    recipient_name: Mapped[str] = mapped_column(String(100), default="")
    channel: Mapped[str] = mapped_column(String(40))  # inbox, email, wecom, ...
    address: Mapped[str] = mapped_column(String(200), default="")
    lang: Mapped[str] = mapped_column(String(10), default="zh-CN")
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A text message's template: {"template", "sign_name", "params": [[name, value], ...]}.
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(80))  # staff:12, owner, system, sla-clock
    action: Mapped[str] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditIsAppendOnly(Exception):
    pass


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _ctx: object, _instances: object) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent):
            raise AuditIsAppendOnly("the audit trail is append-only")


_audit_extra: ContextVar[dict[str, Any] | None] = ContextVar("audit_extra", default=None)


@contextmanager
def audit_extra(**detail: Any) -> Iterator[None]:
    """Detail added to every audit row written inside: the CLI's operating-system user
    beside the staff id --as names, which anyone can type."""
    token = _audit_extra.set({**(_audit_extra.get() or {}), **detail})
    try:
        yield
    finally:
        _audit_extra.reset(token)


def audit(
    session: Session, *, at: datetime, actor: str, action: str,
    case_id: int | None = None, **detail: Any,
) -> None:
    session.add(AuditEvent(at=at, actor=actor, action=action, case_id=case_id,
                           detail={**(_audit_extra.get() or {}), **detail}))


@dataclass(frozen=True)
class Recipient:
    key: str  # staff:12, owner:13800138000, group:ops_bot
    name: str
    email: str | None = None
    mobile: str | None = None


def notify(
    session: Session, *, procedure: str, event: str, to: list[Recipient], context: dict[str, Any],
    key: str, now: datetime, case_id: int | None, lang: str, routes: dict[str, list[str]],
    channel_kinds: dict[str, str], sms: Sms | None = None,
    links: Callable[[Recipient], str] | None = None,
) -> int:
    """Write the in-app message for each recipient plus each routed channel; returns rows added.

    `key` names the event occurrence: the same key twice (a replayed flow) adds nothing.
    `links` gives a person their own one-tap link (`link` in the template), made only for
    a message actually written; a group's post carries none.
    """
    template = template_for(procedure, event, lang)
    contexts: dict[str, dict[str, Any]] = {}
    added = 0
    for dedupe, recipient, channel, address, status in _deliveries(
            event, to, key, routes, channel_kinds, sms):
        if session.scalar(select(Notification.id).where(Notification.dedupe_key == dedupe)):
            continue
        if recipient.key not in contexts:
            contexts[recipient.key] = _own_context(context, recipient, links)
        ctx = contexts[recipient.key]
        session.add(Notification(**_row(dedupe, recipient, channel, address, status,
                                        render_with(template, ctx), event=event,
                                        case_id=case_id, lang=lang, now=now),
                                 params=_sms_params(event, channel, channel_kinds, sms, ctx)))
        added += 1
    session.flush()
    return added


def _own_context(context: dict[str, Any], person: Recipient,
                 links: Callable[[Recipient], str] | None) -> dict[str, Any]:
    """One person's message fields: their own link (a group's post carries none), and
    whether it goes to the owner."""
    personal = links if not person.key.startswith("group:") else None
    return context | {"link": personal(person) if personal else "",
                      "to_owner": person.key.startswith("owner:")}


def _sms_params(event: str, channel: str, channel_kinds: dict[str, str], sms: Sms | None,
                ctx: dict[str, Any]) -> dict[str, Any] | None:
    """A text's template and its values, taken from the message's own fields."""
    if sms is None or channel_kinds.get(channel) not in SMS_KINDS:
        return None
    template = sms.templates[event]
    return {"template": template.id, "sign_name": sms.sign_name,
            "params": [[name, str(ctx.get(name, ""))] for name in template.params]}


@dataclass(frozen=True)
class Message:
    """One event occurrence for notify_many: what notify() takes, less the shared settings."""

    procedure: str
    event: str
    to: list[Recipient]
    context: dict[str, Any]
    key: str
    case_id: int | None
    # Each person's own one-tap link, as notify()'s `links` (models.links.for_step).
    links: Callable[[Recipient], str] | None = None


def notify_many(
    session: Session, messages: list[Message], *, now: datetime, lang: str,
    routes: dict[str, list[str]], channel_kinds: dict[str, str], sms: Sms | None = None,
) -> None:
    """notify() for a batch: each message rendered in Python from a template looked up once,
    all rows written by one INSERT that skips any dedupe key already written."""
    templates: dict[tuple[str, str], Template] = {}
    rows: list[dict[str, Any]] = []
    for m in messages:
        found = templates.get((m.procedure, m.event))
        if found is None:
            found = templates[(m.procedure, m.event)] = template_for(m.procedure, m.event, lang)
        # Each person's message is their own (their link): rendered once per person.
        own: dict[str, tuple[Rendered, dict[str, Any]]] = {}
        for delivery in _deliveries(m.event, m.to, m.key, routes, channel_kinds, sms):
            person = delivery[1]
            if person.key not in own:
                ctx = _own_context(m.context, person, m.links)
                own[person.key] = render_with(found, ctx), ctx
            msg, ctx = own[person.key]
            rows.append(_row(*delivery, msg, event=m.event, case_id=m.case_id, lang=lang,
                             now=now)
                        | {"params": _sms_params(m.event, delivery[2], channel_kinds, sms, ctx)})
    insert_notifications(session, rows)


def _deliveries(
    event: str, to: list[Recipient], key: str, routes: dict[str, list[str]],
    channel_kinds: dict[str, str], sms: Sms | None = None,
) -> Iterator[tuple[str, Recipient, str, str, str]]:
    """(dedupe key, recipient, channel, address, status) of each row an event writes.

    E-mail and SMS reach each person at their own address; a bot posts once to its group.
    An owner has no inbox: whom no routed channel reaches is texted through sms.channel
    when the event has a template there."""
    texts = sms is not None and event in sms.templates
    for person in to:
        # The in-app inbox is the table itself: delivered once written.
        yield f"{key}|{person.key}|inbox", person, "inbox", person.key, "delivered"
        reached = False
        for channel in routes.get(event, []):
            kind = channel_kinds.get(channel)
            if kind == "email" and person.email:
                yield f"{key}|{person.key}|{channel}", person, channel, person.email, "pending"
                reached = True
            elif kind in SMS_KINDS and texts and person.mobile:
                yield f"{key}|{person.key}|{channel}", person, channel, person.mobile, "pending"
                reached = True
        if (not reached and texts and sms is not None and sms.channel and person.mobile
                and person.key.startswith("owner:")):
            yield (f"{key}|{person.key}|{sms.channel}", person, sms.channel, person.mobile,
                   "pending")
    for channel in routes.get(event, []):
        if channel_kinds.get(channel) not in ("email", *SMS_KINDS):
            group = Recipient(key=f"group:{channel}", name=channel)
            yield f"{key}|group|{channel}", group, channel, channel, "pending"


def _row(dedupe: str, recipient: Recipient, channel: str, address: str, status: str,
         msg: Rendered, *, event: str, case_id: int | None, lang: str,
         now: datetime) -> dict[str, Any]:
    return dict(
        dedupe_key=dedupe, case_id=case_id, event=event, recipient=recipient.key,
        recipient_name=recipient.name, channel=channel, address=address, lang=lang,
        subject=msg.subject, body=msg.body, status=status, attempts=0, next_attempt_at=now,
        last_error="", created_at=now, sent_at=now if status == "delivered" else None,
    )


def insert_notifications(session: Session, rows: list[dict[str, Any]]) -> None:
    """Outbox rows of a batch in one INSERT; a row whose dedupe_key is already written (a
    replay, another clock) is skipped by the database, not raised, on either dialect."""
    insert_rows(session, Notification.__table__, rows, skip_existing=["dedupe_key"])


def audit_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Audit rows of a batch ({at, actor, action, case_id, detail}) in one INSERT."""
    insert_rows(session, AuditEvent.__table__, rows)
