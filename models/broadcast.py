"""Notices to every household of the affected buildings, written in one transaction.

A community of 5,000 households means 5,000 rows: they are inserted in bulk, and the event's
own summary row makes a replayed broadcast a no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from core.policy import get_policy
from core.render import render
from models import notices
from models.cases import Case
from models.org import Building, Resident, Unit
from models.outbox import Notification, audit


def households(session: Session, case: Case) -> list[tuple[int, str, str, str | None]]:
    """(resident id, name, phone, email) of the case's buildings, or the whole community."""
    query = (select(Resident.id, Resident.name, Resident.phone, Resident.email)
             .join(Unit, Unit.id == Resident.unit_id).where(Unit.community_id == case.community_id))
    codes = case.data.get("buildings") or []
    if codes:
        query = query.join(Building, Building.id == Unit.building_id).where(
            Building.code.in_([str(c) for c in codes]))
    return [tuple(row) for row in session.execute(query.order_by(Resident.id))]  # type: ignore[misc]


def to_residents(session: Session, case: Case, event: str, *, key: str, now: datetime,
                 **extra: Any) -> int:
    summary_key = f"{key}|broadcast"
    if session.scalar(select(Notification.id).where(Notification.dedupe_key == summary_key)):
        return 0
    policy = get_policy()
    ctx = notices.case_context(session, case, policy.lang) | case.data | extra
    msg = render(case.procedure, event, policy.lang, **ctx)
    people = households(session, case)
    routes = policy.routes.get("broadcast", [])
    email_channels = [c for c in routes if policy.channels[c].get("kind") == "email"]
    base = dict(case_id=case.id, event=event, lang=policy.lang, subject=msg.subject,
                body=msg.body, next_attempt_at=now, created_at=now, attempts=0, last_error="")
    rows = [base | dict(dedupe_key=summary_key, recipient=f"broadcast:{case.number}",
                        recipient_name=f"{len(people)} 户住户", channel="broadcast",
                        address="", status="delivered", sent_at=now)]
    for rid, name, _phone, email in people:
        rows.append(base | dict(dedupe_key=f"{key}|resident:{rid}|inbox",
                                recipient=f"resident:{rid}", recipient_name=name, channel="inbox",
                                address=f"resident:{rid}", status="delivered", sent_at=now))
        for channel in email_channels if email else []:
            rows.append(base | dict(dedupe_key=f"{key}|resident:{rid}|{channel}",
                                    recipient=f"resident:{rid}", recipient_name=name,
                                    channel=channel, address=email, status="pending",
                                    sent_at=None))
    for channel in routes:
        if channel not in email_channels:  # a residents' group bot: one post for all
            rows.append(base | dict(dedupe_key=f"{key}|group|{channel}",
                                    recipient=f"group:{channel}", recipient_name=channel,
                                    channel=channel, address=channel, status="pending",
                                    sent_at=None))
    session.execute(insert(Notification), rows)
    audit(session, at=now, actor="flow", action="broadcast", case_id=case.id, event=event,
          households=len(people), rows=len(rows))
    return len(people)
