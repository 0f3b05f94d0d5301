"""Storm checks of vacant units (PROCEDURES.md §7 "Storms trigger extra vacant-unit checks",
§10 exterior checks before and after heavy rain), ordered at once by a supervisor.

An order makes a round of the vacant-units plan now in each of the community's areas,
through the plans' own round-making (models.inspection.claim_round and the unique key
plan + community + area + fire time), so a storm round is checked in, lapses and acts on
its findings as any other. Its fire time is the top of the hour it was ordered in (an
order after the storm: one second past it), so a second order of the same kind within the
hour finds the rounds made and makes none; its checkpoints are due `storm_within` after
the order (policy, default 4 h), whatever the plan's patrol hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Forbidden, PropflowError
from core.policy import get_policy
from core.vocabulary import Role
from models import directory, inspection, notices
from models.cases import Case
from models.intake import open_case
from models.outbox import audit

PLAN = "vacant_units"
WHEN = {"before": "暴雨前", "after": "暴雨后"}
# Who may order them: the community's customer-service management (seed: the supervisor).
ORDERED_BY = (Role.CS_SUPERVISOR, Role.CS_DIRECTOR, Role.PROJECT_MANAGER, Role.COMPANY_CS)

When = Literal["before", "after"]


@dataclass(frozen=True)
class StormRound:
    number: str
    case_id: int
    area: str
    made: bool  # False: an earlier order (or the plan's schedule) made it this hour


def fire_time(now: datetime, when: str) -> datetime:
    """The key of an order's rounds: its hour, one second apart before and after."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    return hour + timedelta(seconds=1) if when == "after" else hour


def check_when(value: str) -> str:
    if value not in WHEN:
        raise PropflowError(f"when：{value!r} 不是 before 或 after；expected before（暴雨前）or "
                       "after（暴雨后）", field="when")
    return value


def order(session: Session, *, community: str, when: str, staff_id: int | str,
          now: datetime) -> tuple[list[StormRound], list[int]]:
    """Make the storm's rounds once; returns them and the ids of the cases made now (whose
    runs the caller starts once this transaction is committed). Audited, each order."""
    policy = get_policy()
    check_when(when)
    place = directory.community(session, community)
    person = directory.staff(session, staff_id, field="as")
    if not directory.roles_of(person, place.id) & set(ORDERED_BY):
        raise Forbidden(f"as：员工 {person.id} 不是{place.name}的客服主管、客服经理、项目经理或"
                        f"公司客服；expected one of {[str(r) for r in ORDERED_BY]} to order "
                        "storm checks", field="as")
    plan = inspection.plan_of(policy, PLAN, field="plan")
    fire = fire_time(now, when)
    ends = now + inspection.section(policy).storm_within
    label = WHEN[when]
    out: list[StormRound] = []
    made: list[int] = []
    for area in inspection.areas(session, place.id, plan):
        if inspection.claim_round(session, plan=PLAN, community_id=place.id, area=area.key,
                                  fire_at=fire, ends_at=ends, now=now):
            case = open_case(session, inspection.PROCEDURE, dict(
                plan=PLAN, community=place.code,
                area=None if area.key == inspection.ALL else area.key,
                at=fire.isoformat()), now)
            # Due by the storm's own deadline, not the plan's patrol hours.
            shown = f"{notices.local(now)[5:]}–{notices.local(ends)[-5:]}"
            case.data = {**case.data, "ends_at": ends.isoformat(), "storm": when,
                         "storm_label": label}
            case.description = f"{label}{plan.label} {area.label} {shown}"
            _tell(session, case, area.staff_id, label, ends, person.name)
            out.append(StormRound(case.number, case.id, area.key, True))
            made.append(case.id)
        else:
            found = session.execute(select(Case.number, Case.id).join(
                inspection.InspectionRound, inspection.InspectionRound.case_id == Case.id).where(
                inspection.InspectionRound.plan == PLAN,
                inspection.InspectionRound.community_id == place.id,
                inspection.InspectionRound.area == area.key,
                inspection.InspectionRound.fire_at == fire)).first()
            if found is not None:
                out.append(StormRound(found[0], found[1], area.key, False))
    audit(session, at=now, actor=f"staff:{person.id}", action="storm_checks_ordered",
          community=place.code, when=when, rounds=[r.number for r in out],
          made=[r.number for r in out if r.made])
    session.flush()
    return out, made


def _tell(session: Session, case: Case, staff_id: int | None, label: str, ends: datetime,
          ordered_by: str) -> None:
    """The area's steward (or every holder of the plan's role when the area has none)."""
    people = [directory.staff(session, staff_id)] if staff_id else \
        directory.people_in_role(session, case.community_id, case.data["role"])
    notices.tell(session, case=case, event="storm_check", key=f"case:{case.id}:storm",
                 now=case.created_at, to=[notices.staff_recipient(p) for p in people],
                 storm_label=label, area_label=case.data["area_label"],
                 deadline=notices.local(ends), ordered_by=ordered_by)


__all__ = ["ORDERED_BY", "PLAN", "WHEN", "StormRound", "check_when", "fire_time", "order"]
