"""Deliver due outbox rows over their channels, a few at a time, with retries and backoff."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from core.clock import now
from core.policy import get_policy
from models.db import unit_of_work
from models.org import Staff
from notifications import outbox
from notifications.channels import Channel, DeliveryError, Message, SmsTemplate, build_channel

log = logging.getLogger("propflow.delivery")


@lru_cache(maxsize=64)
def _channel(name: str, spec_items: tuple[tuple[str, Any], ...]) -> Channel:
    # One adapter per channel keeps its rate limiter shared by every delivery.
    return build_channel(name, dict(spec_items))


def channel(name: str) -> Channel:
    spec = get_policy().channels[name]
    return _channel(name, tuple(sorted(spec.items())))


def _send(row_id: int, channel_name: str, message: Message) -> tuple[int, str | None, bool]:
    try:
        channel(channel_name).send(message)
        return row_id, None, False
    except DeliveryError as exc:
        return row_id, str(exc), exc.retryable
    except Exception as exc:  # a bug in an adapter must not stop the others
        log.exception("channel %s failed", channel_name)
        return row_id, f"{type(exc).__name__}: {exc}", True


def deliver_due(limit: int = 200, concurrency: int = 8) -> dict[str, int]:
    """One delivery pass; returns how many rows were sent, retried and failed."""
    jobs: list[tuple[int, str, Message]] = []
    with unit_of_work() as session:
        channels = get_policy().channels
        for row in outbox.claim_due(session, now(), limit):
            mobiles: tuple[str, ...] = ()
            if row.recipient.startswith("staff:") and row.channel in channels:
                person = session.get(Staff, int(row.recipient.split(":")[1]))
                mobiles = (person.phone,) if person and person.phone else ()
            to = (row.address,) if "@" in row.address else ()
            text = row.params or {}
            sms = SmsTemplate(text["template"], text["sign_name"],
                              tuple((k, v) for k, v in text["params"])) if text else None
            jobs.append((row.id, row.channel if row.channel in channels else "",
                         Message(subject=row.subject, body=row.body, to=to,
                                 mention_mobiles=mobiles, phone=row.address if sms else "",
                                 sms=sms)))
    if not jobs:
        return {"sent": 0, "retry": 0, "failed": 0}
    # Bounded: a broadcast to thousands goes out a few at a time, per-channel rate limits apply.
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda job: _send_or_refuse(*job), jobs))
    with unit_of_work() as session:
        outbox.settle(session, results, now())
    return {
        "sent": sum(1 for _, error, _ in results if error is None),
        "retry": sum(1 for _, error, retry in results if error is not None and retry),
        "failed": sum(1 for _, error, retry in results if error is not None and not retry),
    }


def _send_or_refuse(row_id: int, channel_name: str, message: Message) -> tuple[int, str | None,
                                                                               bool]:
    if not channel_name:
        return row_id, "channel is no longer in the policy file", False
    return _send(row_id, channel_name, message)
