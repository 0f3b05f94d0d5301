"""Delivering the outbox: due rows are claimed, sent, and settled with retries and backoff.

The rows are written by models.outbox.notify, in the transaction of their event."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models.outbox import Notification

MAX_ATTEMPTS = 8


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
