"""The outbox: rows written beside their event, delivered later with retries and backoff."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models.outbox import Notification
from notifications.render import render

MAX_ATTEMPTS = 8


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


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


LEASE = timedelta(minutes=10)


def claim_due(session: Session, now: datetime, limit: int) -> list[Notification]:
    """Take up to `limit` due rows for sending, in one statement; another replica that got
    there first keeps them. A taken row carries a lease: if its sender dies, the row comes
    back when the lease runs out, so a crash loses nothing."""
    ids = list(session.scalars(
        select(Notification.id)
        .where(or_(Notification.status == "pending", Notification.status == "sending"),
               Notification.next_attempt_at <= now)
        .order_by(Notification.id).limit(limit)))
    if not ids:
        return []
    taken = list(session.scalars(
        update(Notification)
        .where(Notification.id.in_(ids), Notification.next_attempt_at <= now,
               or_(Notification.status == "pending", Notification.status == "sending"))
        .values(status="sending", attempts=Notification.attempts + 1,
                next_attempt_at=now + LEASE)
        .returning(Notification.id)
        .execution_options(synchronize_session=False)))
    return list(session.scalars(select(Notification).where(Notification.id.in_(taken))
                                .order_by(Notification.id)))


def settle(session: Session, results: list[tuple[int, str | None, bool]], now: datetime) -> None:
    """Record how each send went: sent rows in one statement, failures one by one."""
    sent = [row_id for row_id, error, _ in results if error is None]
    if sent:
        session.execute(update(Notification).where(Notification.id.in_(sent))
                        .values(status="sent", sent_at=now, last_error="")
                        .execution_options(synchronize_session=False))
    for row_id, error, retryable in results:
        if error is None:
            continue
        row = session.get(Notification, row_id)
        assert row is not None
        if retryable and row.attempts < MAX_ATTEMPTS:
            row.status, row.last_error = "pending", error
            row.next_attempt_at = now + backoff(row.attempts)
        else:
            row.status, row.last_error = "failed", error
