"""Emergency (应急 / 突发事件) rules: the report, who is called out, office-incident classes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.policy import get_policy
from models import directory, limits, notices
from models.cases import Case
from models.numbers import next_number
from models.org import Building
from models.outbox import audit
from models.repair import check_choice, check_phone
from models.steps import require_text


def report_emergency(
    session: Session, *, kind: str, community: str, location: str, reporter: str, now: datetime,
    buildings: list[str] | None = None, phone: str = "",
) -> Case:
    policy = get_policy()
    proc = policy.procedures["emergency"]
    check_choice(kind, list(proc.kinds), "kind")
    place = directory.community(session, community)
    location = require_text(location, "location", "where it is happening, e.g. 2号楼地下车库")
    reporter = require_text(reporter, "reporter", "who reports it")
    limits.check_intake(location=location, reporter=reporter)
    if phone:
        phone = check_phone(phone)
    wanted = [b.strip() for b in (buildings or []) if b.strip()]
    known = set(session.scalars(select(Building.code).where(Building.community_id == place.id)))
    unknown = [b for b in wanted if b not in known]
    if unknown:
        raise NotFound(f"buildings：项目 {community} 没有楼栋 {unknown}；expected some of "
                       f"{sorted(known)}", field="buildings")
    info = proc.kinds[kind]
    case = Case(
        number=next_number(session, proc.prefix, now, policy.timezone), procedure="emergency",
        community_id=place.id, unit_id=None, status="open", category=kind, priority="high",
        channel="phone", reporter_name=reporter, reporter_phone=phone, description=location,
        created_at=now,
        data={"location": location, "buildings": wanted, "office_class": info.office_class,
              "fanout": [d.model_dump() for d in info.fanout]},
    )
    session.add(case)
    session.flush()
    audit(session, at=now, actor="reporter", action="case_opened", case_id=case.id,
          number=case.number, kind=kind, location=location, buildings=wanted)
    if phone:
        notices.tell(session, case=case, event="received", to=[notices.owner_recipient(case)],
                     key=f"case:{case.id}:received", now=now)
    return case
