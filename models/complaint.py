"""Complaint (投诉) rules: intake with a first responder, who investigates at which level."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from core.errors import PropflowError
from core.policy import get_policy
from models import directory, lifecycle, limits, notices
from models.authority import staff_of
from models.cases import Case
from models.numbers import next_number
from models.outbox import audit
from models.repair import CHANNELS, check_choice, check_phone
from models.steps import require_text

# A refused result is reinvestigated one level up; the second refusal reaches the manager.
REOPEN_LEVELS = ("cs_supervisor", "project_manager")


def open_complaint(
    session: Session, *, unit: str, complainant: str, phone: str, category: str,
    description: str, now: datetime, channel: str = "phone", received_by: int | None = None,
    repair: str | None = None, community: str | None = None,
) -> Case:
    policy = get_policy()
    proc = policy.procedures["complaint"]
    check_choice(category, list(proc.categories), "category")
    check_choice(channel, CHANNELS, "channel")
    complainant = require_text(complainant, "complainant", "the complainant's name")
    phone = check_phone(phone)
    description = require_text(description, "description", "what the complaint is about")
    limits.check_intake(complainant=complainant, description=description)
    found = directory.unit(session, unit, community)
    responder = _first_responder(session, found.community_id, received_by)
    about = directory.case(session, repair) if repair else None
    if about is not None and about.procedure != "repair":
        raise PropflowError(f"repair：{repair} 不是报修工单；expected a repair number BX-...",
                            field="repair")
    case = Case(
        number=next_number(session, proc.prefix, now, policy.timezone), procedure="complaint",
        community_id=found.community_id, unit_id=found.id, status="open", category=category,
        priority="medium", channel=channel, reporter_name=complainant, reporter_phone=phone,
        description=description, created_at=now,
        data={"first_responder": responder.id,
              "department": proc.categories[category].department or "cs_supervisor"},
    )
    session.add(case)
    session.flush()
    audit(session, at=now, actor=f"staff:{responder.id}", action="case_opened", case_id=case.id,
          number=case.number, category=category, first_responder=responder.id)
    if about is not None:
        lifecycle.link(session, case, about, "complaint_about", now)
    notices.tell(session, case=case, event="received", to=[notices.owner_recipient(case)],
                 key=f"case:{case.id}:received", now=now)
    return case


def _first_responder(session: Session, community_id: int, received_by: int | None):  # type: ignore[no-untyped-def]
    if received_by is not None:
        # Whoever receives it owns it (首问责任制), whatever their role: any active staff of
        # the community, or of the company, but not a stranger to the complainant's community.
        return staff_of(session, community_id, received_by, field="received_by")
    desk = directory.people_in_role(session, community_id, "csr")
    if not desk:
        raise PropflowError("received_by：该项目没有客服专员；expected --received-by STAFF",
                            field="received_by")
    return desk[0]


def investigator(department: str, level: int) -> str:
    """Level 0 is the responsible department; each refusal goes one level up."""
    ladder = [department, *[r for r in REOPEN_LEVELS if r != department]]
    return ladder[min(level, len(ladder) - 1)]


def needs_approval(values: dict[str, object]) -> bool:
    """A compensation or an exception needs the project manager (seed)."""
    return float(str(values.get("compensation") or 0)) > 0 or bool(values.get("exception"))
