"""Repair (报修) rules: intake checks, classification, dispatch choice, closing."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.errors import PropflowError
from core.policy import get_policy
from models import directory, limits, notices
from models.authority import staff_of
from models.cases import Case
from models.numbers import next_number
from models.outbox import audit
from models.steps import require_text

PRIORITIES = ("high", "medium", "low")
CHANNELS = ("phone", "online", "front_desk", "patrol")
MOBILE = re.compile(r"^1[3-9]\d{9}$")


def check_phone(phone: str, field: str = "phone") -> str:
    digits = re.sub(r"[\s-]", "", phone or "").removeprefix("+86")
    if not MOBILE.match(digits):
        raise PropflowError(f"{field}：{phone!r} 不是大陆手机号；expected 11 digits starting "
                            "with 1, e.g. 13800138000", field=field)
    return digits


def check_choice(value: str, choices: tuple[str, ...] | list[str], field: str) -> str:
    if value not in choices:
        raise PropflowError(f"{field}：{value!r} 不是有效值；expected one of {list(choices)}",
                            field=field)
    return value


def open_repair(
    session: Session, *, unit: str, category: str, priority: str, reporter: str, phone: str,
    description: str, now: datetime, channel: str = "phone", community: str | None = None,
    received_by: int | None = None,
) -> Case:
    """Intake: check, number and classify a repair request; the owner is told at once."""
    policy = get_policy()
    proc = policy.procedures["repair"]
    check_choice(category, list(proc.categories), "category")
    check_choice(priority, PRIORITIES, "priority")
    check_choice(channel, CHANNELS, "channel")
    reporter = require_text(reporter, "reporter", "the reporter's name")
    phone = check_phone(phone)
    description = require_text(description, "description", "what is broken, and where")
    limits.check_intake(reporter=reporter, description=description)
    found = directory.unit(session, unit, community)
    if received_by is not None:  # the first responder: any staff of the community
        staff_of(session, found.community_id, received_by, field="received_by")

    # Safety words raise the priority (seed: a leak is dispatched at once).
    if priority != "high" and any(word in description for word in proc.high_keywords):
        priority = "high"
    rule = proc.categories[category]
    today = now.astimezone(ZoneInfo(policy.timezone)).date()
    in_warranty = bool(found.warranty_until and found.warranty_until >= today)
    case = Case(
        number=next_number(session, proc.prefix, now, policy.timezone), procedure="repair",
        community_id=found.community_id, unit_id=found.id, status="open", category=category,
        priority=priority, paid=rule.chargeable and not in_warranty, channel=channel,
        reporter_name=reporter, reporter_phone=phone, description=description, created_at=now,
        data={"complex": rule.complex, "skills": rule.skills, "in_warranty": in_warranty,
              "received_by": received_by},
    )
    session.add(case)
    session.flush()
    audit(session, at=now, actor=f"staff:{received_by}" if received_by else "front_desk",
          action="case_opened", case_id=case.id, number=case.number, category=category,
          priority=priority, paid=case.paid, channel=channel)
    notices.tell(session, case=case, event="received", to=[notices.owner_recipient(case)],
                 key=f"case:{case.id}:received", now=now)
    return case


def choose_technician(session: Session, case: Case) -> int | None:
    """By skill, then load, in the case's community; None sends it to a supervisor."""
    if case.data.get("complex"):
        return None
    skills = set(case.data.get("skills", []))
    fits = [p for p in directory.people_in_role(session, case.community_id, "technician")
            if p.skill_set & skills]
    if not fits:
        return None
    return min(fits, key=lambda p: (directory.open_load(session, p.id), p.id)).id
