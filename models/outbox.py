"""Notifications outbox and audit trail, written in the transaction of their event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.render import render
from models.db import Base, UTCDateTime


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


def audit(
    session: Session, *, at: datetime, actor: str, action: str,
    case_id: int | None = None, **detail: Any,
) -> None:
    session.add(AuditEvent(at=at, actor=actor, action=action, case_id=case_id, detail=detail))


@dataclass(frozen=True)
class Recipient:
    key: str  # staff:12, owner:13800138000, group:ops_bot
    name: str
    email: str | None = None
    mobile: str | None = None


def notify(
    session: Session, *, procedure: str, event: str, to: list[Recipient], context: dict[str, Any],
    key: str, now: datetime, case_id: int | None, lang: str, routes: dict[str, list[str]],
    channel_kinds: dict[str, str],
) -> int:
    """Write the in-app message for each recipient plus each routed channel; returns rows added.

    `key` names the event occurrence: the same key twice (a replayed flow) adds nothing.
    """
    msg = render(procedure, event, lang, **context)
    added = 0

    def add(dedupe: str, recipient: Recipient, channel: str, address: str, status: str) -> None:
        nonlocal added
        if session.scalar(select(Notification.id).where(Notification.dedupe_key == dedupe)):
            return
        session.add(Notification(
            dedupe_key=dedupe, case_id=case_id, event=event, recipient=recipient.key,
            recipient_name=recipient.name, channel=channel, address=address, lang=lang,
            subject=msg.subject, body=msg.body, status=status, next_attempt_at=now,
            created_at=now, sent_at=now if status == "delivered" else None,
        ))
        added += 1

    for person in to:
        # The in-app inbox is the table itself: delivered once written.
        add(f"{key}|{person.key}|inbox", person, "inbox", person.key, "delivered")
        for channel in routes.get(event, []):
            if channel_kinds.get(channel) == "email" and person.email:
                add(f"{key}|{person.key}|{channel}", person, channel, person.email, "pending")
    for channel in routes.get(event, []):
        if channel_kinds.get(channel) != "email":
            group = Recipient(key=f"group:{channel}", name=channel)
            add(f"{key}|group|{channel}", group, channel, channel, "pending")
    session.flush()
    return added
