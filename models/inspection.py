"""Inspection rounds (巡查, PROCEDURES.md §7): plans, areas, rounds, checkpoints, check-ins.

A plan of the policy (`procedures.inspection.plans.<plan>`, core/policy/inspection.py) fires
on its cron; each firing makes one round per area: a case of the `inspection` procedure
(XC-...), recorded once in `inspection_rounds` under the unique key (plan, community, area,
fire time), so two replicas, or a pass repeated, make one round.

Step keys of a round (stable: the web check-in and the QR sheet rely on them):
  - a checkpoint's step is ``checkpoint#<checkpoint key>``, e.g. ``checkpoint#lobby``
    (kind ``checkpoint``; its form is CheckpointForm);
  - a shop's rectification follow-up is ``follow_up#<checkpoint key>`` (kind ``follow_up``).
``step_key(checkpoint)`` builds the first. A check-in (who, when) is kept in the step's
context under ``check_ins``, a list of ``{"staff_id": 3, "name": "赵磊", "at": <ISO UTC>}``.

Areas: ``per: area`` splits the community's buildings, in order, among the staff holding the
plan's role there (by staff id), one contiguous run of buildings each; the area's key is
``s<staff id>``. ``per: community`` (or nobody holding the role) makes the one area ``all``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo

from cronsim import CronSim
from pydantic import ConfigDict, Field, field_validator, model_validator
from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.errors import Conflict, NotFound, PropflowError
from core.policy.inspection import COVERS
from core.procedures import Schedule
from core.vocabulary import CaseStatus, Channel, StepStatus
from models import directory
from models.cases import Case, Step, step_by_key
from models.db import Base, UTCDateTime
from models.forms import Form, Short
from models.intake import Intake, Opening, Place
from models.org import Building, Community, Staff, Unit
from models.outbox import audit
from models.validate import CommaList, choice

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Policy
    from core.policy import Procedure as PolicySection
    from core.policy.inspection import Plan

PROCEDURE = "inspection"

ALL = "all"  # the one area of a per-community plan
FINDINGS = ("none", "broken_facility", "renovation_violation", "fire_safety", "gas_smell",
            "vacant_defect")


def step_key(checkpoint: str) -> str:
    return f"checkpoint#{checkpoint}"


def follow_up_key(checkpoint: str) -> str:
    return f"follow_up#{checkpoint}"


# --- the record ---------------------------------------------------------------------------------

class InspectionRound(Base):
    """One round: the unique key is the claim that makes it once (migration 0011)."""

    __tablename__ = "inspection_rounds"
    __table_args__ = (UniqueConstraint("plan", "community_id", "area", "fire_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    plan: Mapped[str] = mapped_column(String(40))
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    area: Mapped[str] = mapped_column(String(40))
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True,
                                                unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InspectionRecheck(Base):
    """A vacant unit's defect, rechecked at the plan's first round of a later month."""

    __tablename__ = "inspection_rechecks"
    id: Mapped[int] = mapped_column(primary_key=True)
    plan: Mapped[str] = mapped_column(String(40))
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    unit: Mapped[str] = mapped_column(String(40))
    defect: Mapped[str] = mapped_column(Text)
    found_case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recheck_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True)


# --- plans and their times --------------------------------------------------------------------

def section(policy: Policy) -> PolicySection:
    return policy.procedures[PROCEDURE]


def plan_of(policy: Policy, plan: str, field: str = "plan") -> Plan:
    plans = section(policy).plans
    if plan not in plans:
        raise NotFound(f"{field}：没有巡查计划 {plan!r}；expected one of {sorted(plans)} "
                       "(policy procedures.inspection.plans)", field=field)
    return plans[plan]


def schedules(policy: Policy) -> list[Schedule]:
    """Each plan a deployment inspection/<plan> on its cron (core/procedures.py `schedules`):
    prefect.yaml, the served deployments and their next runs are derived from this."""
    return [Schedule(name=key, cron=plan.cron, timezone=plan.timezone,
                     parameters={"plan": key},
                     description=f"巡查计划 {plan.label}（{COVERS[plan.covers]}）— makes "
                                 "each fire time's rounds, one per area and community")
            for key, plan in section(policy).plans.items()]


def checkpoints(policy: Policy, plan: str) -> list[tuple[str, str]]:
    """The plan's checkpoints as (key, zh label), in the policy's order: the QR sheet."""
    return [(key, cp.label) for key, cp in plan_of(policy, plan).checkpoints.items()]


def fire_times(policy: Policy, plan: str, after: datetime, until: datetime) -> list[datetime]:
    """The plan's fire times in (after, until], aware UTC; a workdays-only plan skips the
    days the business calendar (chinesecalendar and the policy's overrides) says are off."""
    spec = plan_of(policy, plan)
    zone = ZoneInfo(spec.timezone)
    calendar = policy.business_calendar()
    out: list[datetime] = []
    for at in CronSim(spec.cron, after.astimezone(zone)):
        if at > until:
            break
        if spec.workdays_only and not calendar.is_workday(at.date()):
            continue
        out.append(at.astimezone(UTC))
    return out


def round_end(policy: Policy, plan: str, fire: datetime) -> datetime:
    """A round lasts until the plan's next start that day, or the end of the patrol hours,
    whichever is first (a start after the patrol hours: one hour)."""
    spec = plan_of(policy, plan)
    zone = ZoneInfo(spec.timezone)
    local = fire.astimezone(zone)
    end = datetime.combine(local.date(), spec.end, tzinfo=zone)
    if local >= end:
        return (local + timedelta(hours=1)).astimezone(UTC)
    following = next(iter(CronSim(spec.cron, local)))
    return min(end, following).astimezone(UTC)


# --- areas ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Area:
    key: str  # s<staff id>, or "all"
    label: str
    staff_id: int | None
    buildings: tuple[str, ...]


def _building_order(code: str) -> tuple[int, str]:
    return (int(code), "") if code.isdigit() else (1 << 30, code)


def areas(session: Session, community_id: int, plan: Plan) -> list[Area]:
    """The plan's areas in a community: its buildings split among the role's holders."""
    buildings = sorted(session.scalars(select(Building.code).where(
        Building.community_id == community_id)), key=_building_order)
    holders = directory.people_in_role(session, community_id, plan.role)
    every = f"全部楼栋（{'、'.join(buildings)}）" if buildings else "全部"
    if plan.per == "community" or not holders:
        return [Area(ALL, every, holders[0].id if len(holders) == 1 else None,
                     tuple(buildings))]
    size, extra = divmod(len(buildings), len(holders))
    out: list[Area] = []
    start = 0
    for i, person in enumerate(holders):
        taken = buildings[start:start + size + (1 if i < extra else 0)]
        start += len(taken)
        if not taken:
            continue  # more holders than buildings: nothing left for this one
        label = f"{person.name}：{'、'.join(f'{b}号楼' for b in taken)}"
        out.append(Area(f"s{person.id}", label, person.id, tuple(taken)))
    return out


def area_of(session: Session, community_id: int, plan: Plan, key: str | None) -> Area:
    found = areas(session, community_id, plan)
    if key is None:
        if len(found) == 1:
            return found[0]
        # An ad-hoc round with no area named covers the whole community, for the role.
        codes = tuple(b for a in found for b in a.buildings)
        return Area(ALL, f"全部楼栋（{'、'.join(codes)}）", None, codes)
    for area in found:
        if area.key == key:
            return area
    raise NotFound(f"area：没有巡查片区 {key!r}；expected one of {[a.key for a in found]}",
                   field="area")


# --- intake: a round, from the planner or by hand ------------------------------------------------

def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PropflowError(f"at：{value!r} 不是有效时间；expected e.g. 2026-12-01T08:30 "
                            "(local time) or 2026-12-01T08:30+08:00", field="at") from None
    if parsed.tzinfo is None:
        from core.policy import get_policy

        parsed = parsed.replace(tzinfo=ZoneInfo(get_policy().timezone))
    return parsed.astimezone(UTC)


class RoundIntake(Intake):
    """A round of an inspection plan (巡查): which plan, where, and when it starts."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [dict(
        plan="public_facilities", community="YGHY")]})

    plan: Annotated[str, choice(lambda policy: policy.plans)] = Field(
        description="巡查计划，如 public_facilities|grounds|shops|leisure|vacant_units")
    community: str = Field(description="项目编号，如 YGHY")
    area: str | None = Field(None, description="片区 s<员工编号>（不填：全项目）")
    at: str | None = Field(None, description="开始时间（不填：现在），如 2026-12-01T08:30")

    @field_validator("at")
    @classmethod
    def _at(cls, value: str | None) -> str | None:
        return _when(value).isoformat() if value and value.strip() else None

    def place(self, session: Session) -> Place:
        return Place(directory.community(session, self.community).id)

    def open(self, session: Session, place: Place, policy: PolicySection,
             now: datetime) -> Opening:
        from core.policy import get_policy

        whole = get_policy()
        plan = plan_of(whole, self.plan)
        area = area_of(session, place.community_id, plan, self.area)
        fire = datetime.fromisoformat(self.at) if self.at else now
        ends = round_end(whole, self.plan, fire)
        if ends <= fire:
            raise PropflowError("at：该时间已过巡查时段；expected a time within the patrol hours",
                                field="at")
        zone = ZoneInfo(plan.timezone)
        shown = f"{fire.astimezone(zone):%m-%d %H:%M}–{ends.astimezone(zone):%H:%M}"
        rechecks = _take_rechecks(session, self.plan, place.community_id, fire, zone) \
            if plan.covers == "vacant_units" else []
        return Opening(
            reporter=plan.label, description=f"{plan.label} {area.label} {shown}",
            category=self.plan, channel=Channel.PATROL, actor="planner",
            data={"plan": self.plan, "plan_label": plan.label, "covers": plan.covers,
                  "area": area.key, "area_label": area.label, "buildings": list(area.buildings),
                  "assignee": area.staff_id, "role": plan.role, "fire_at": fire.isoformat(),
                  "ends_at": ends.isoformat(),
                  "checkpoints": [{"key": k, "label": c.label, "items": list(c.items)}
                                  for k, c in plan.checkpoints.items()],
                  "rechecks": rechecks},
            audit={"plan": self.plan, "area": area.key, "fire_at": fire.isoformat()},
            numbered_at=fire,
        )

    def opened(self, session: Session, case: Case, now: datetime) -> None:
        data = case.data
        row = session.scalar(select(InspectionRound).where(
            InspectionRound.plan == data["plan"], InspectionRound.community_id == case.community_id,
            InspectionRound.area == data["area"],
            InspectionRound.fire_at == datetime.fromisoformat(data["fire_at"])))
        if row is not None and row.case_id is not None:
            taken = session.scalar(select(Case.number).where(Case.id == row.case_id))
            raise Conflict(f"at：该计划此片区此时间的巡查已有工单 {taken}；expected another "
                           "--at, or that round", field="at")
        if row is None:  # opened by hand: the planner claims its row before opening
            row = InspectionRound(
                plan=data["plan"], community_id=case.community_id, area=data["area"],
                fire_at=datetime.fromisoformat(data["fire_at"]),
                ends_at=datetime.fromisoformat(data["ends_at"]), created_at=now)
            session.add(row)
        row.case_id = case.id
        for mark in data.get("rechecks", []):
            found = session.get(InspectionRecheck, mark["id"])
            if found is not None:
                found.recheck_case_id = case.id
        session.flush()

    @classmethod
    def details(cls, session: Session, case: Case) -> dict[str, Any]:
        data = case.data or {}
        return {"plan": data.get("plan_label"), "area": data.get("area_label"),
                "window": _window(data),
                "rechecks": [f"{m['unit']}：{m['defect']}" for m in data.get("rechecks", [])]}


def _window(data: dict[str, Any]) -> str:
    from models.notices import local

    if not data.get("fire_at"):
        return ""
    ends = local(datetime.fromisoformat(data["ends_at"]))
    return f"{local(datetime.fromisoformat(data['fire_at']))} – {ends[-5:]}"


def _take_rechecks(session: Session, plan: str, community_id: int, fire: datetime,
                   zone: ZoneInfo) -> list[dict[str, Any]]:
    """Defects of vacant units found in an earlier month, not yet shown on a round."""
    month_start = fire.astimezone(zone).replace(day=1, hour=0, minute=0, second=0,
                                                microsecond=0).astimezone(UTC)
    rows = session.scalars(select(InspectionRecheck).where(
        InspectionRecheck.plan == plan, InspectionRecheck.community_id == community_id,
        InspectionRecheck.recheck_case_id.is_(None),
        InspectionRecheck.found_at < month_start).order_by(InspectionRecheck.id))
    out = []
    for row in rows:
        number = session.scalar(select(Case.number).where(Case.id == row.found_case_id))
        out.append({"id": row.id, "unit": row.unit, "defect": row.defect, "found_in": number})
    return out


def mark_recheck(session: Session, case: Case, unit: str, defect: str, now: datetime) -> None:
    """A vacant unit's defect: the plan's first round of a later month shows it."""
    plan = (case.data or {}).get("plan", "")
    exists = session.scalar(select(InspectionRecheck.id).where(
        InspectionRecheck.found_case_id == case.id, InspectionRecheck.unit == unit,
        InspectionRecheck.defect == defect))
    if exists is None:
        session.add(InspectionRecheck(plan=plan, community_id=case.community_id, unit=unit,
                                      defect=defect, found_case_id=case.id, found_at=now))
        audit(session, at=now, actor="flow", action="recheck_marked", case_id=case.id,
              unit=unit, defect=defect)


def claim_round(session: Session, *, plan: str, community_id: int, area: str,
                fire_at: datetime, ends_at: datetime, now: datetime) -> bool:
    """Claim the round's unique key; False when it exists already (another replica or an
    earlier pass made it). The caller opens its case in the same transaction."""
    found = session.scalar(select(InspectionRound.id).where(
        InspectionRound.plan == plan, InspectionRound.community_id == community_id,
        InspectionRound.area == area, InspectionRound.fire_at == fire_at))
    if found is not None:
        return False
    try:
        with session.begin_nested():
            session.add(InspectionRound(plan=plan, community_id=community_id, area=area,
                                        fire_at=fire_at, ends_at=ends_at, created_at=now))
    except IntegrityError:  # PostgreSQL: another transaction committed the same key first
        return False
    return True


@dataclass(frozen=True)
class Due:
    """A round the planner is to make."""

    plan: str
    community: str
    community_id: int
    area: str
    fire_at: datetime


def due_rounds(session: Session, policy: Policy, after: datetime, until: datetime,
               plans: list[str] | None = None) -> list[Due]:
    """Every round of the plans whose fire time is in (after, until], in time order."""
    out: list[Due] = []
    communities = session.execute(select(Community.id, Community.code).order_by(Community.id)).all()
    for key, plan in section(policy).plans.items():
        if plans is not None and key not in plans:
            continue
        times = fire_times(policy, key, after, until)
        if not times:
            continue
        for community_id, code in communities:
            for area in areas(session, community_id, plan):
                out.extend(Due(key, code, community_id, area.key, at) for at in times)
    return sorted(out, key=lambda d: (d.fire_at, d.plan, d.community_id, d.area))


def open_round(session: Session, due: Due, policy: Policy, now: datetime) -> Case | None:
    """The round's case, once: None when its key was claimed already."""
    from models.intake import open_case

    ends = round_end(policy, due.plan, due.fire_at)
    if not claim_round(session, plan=due.plan, community_id=due.community_id, area=due.area,
                       fire_at=due.fire_at, ends_at=ends, now=now):
        return None
    area = None if due.area == ALL else due.area
    return open_case(session, PROCEDURE, dict(
        plan=due.plan, community=due.community, area=area, at=due.fire_at.isoformat()), now)


# --- checking in at a checkpoint (the QR link) ----------------------------------------------------

def current_round(session: Session, *, community_id: int, plan: str, at: datetime,
                  staff_id: int | None = None) -> Case | None:
    """The plan's open round in the community whose window holds `at`; of several (areas),
    the one assigned to this member of staff, else the only one."""
    rows = session.execute(select(InspectionRound, Case).join(
        Case, Case.id == InspectionRound.case_id).where(
        InspectionRound.plan == plan, InspectionRound.community_id == community_id,
        InspectionRound.fire_at <= at, InspectionRound.ends_at > at,
        Case.status != CaseStatus.CLOSED).order_by(InspectionRound.fire_at.desc())).all()
    cases = [case for _, case in rows]
    mine = [c for c in cases if (c.data or {}).get("assignee") == staff_id]
    if mine:
        return mine[0]
    return cases[0] if len(cases) == 1 else (cases[0] if cases and staff_id is None else None)


def check_in(session: Session, *, community: str, plan: str, checkpoint: str, staff_id: int,
             at: datetime) -> Step:
    """Record a check-in (who, when) at a checkpoint against the current round: the plan's
    round in the community whose window holds `at` (of several areas, the one this member of
    staff patrols). Returns the checkpoint's step; its context's ``check_ins`` lists them.
    Refused (PropflowError naming the field, zh-CN) for an unknown plan or checkpoint, an
    inactive member of staff, or no round open at that time."""
    from core.policy import get_policy

    policy = get_policy()
    spec = plan_of(policy, plan)
    if checkpoint not in spec.checkpoints:
        raise NotFound(f"checkpoint：计划 {spec.label} 没有检查点 {checkpoint!r}；expected one "
                       f"of {list(spec.checkpoints)}", field="checkpoint")
    place = directory.community(session, community)
    person: Staff = directory.staff(session, staff_id, field="staff_id")
    case = current_round(session, community_id=place.id, plan=plan, at=at, staff_id=person.id)
    if case is None:
        raise NotFound(f"checkpoint：{place.name} 现在没有进行中的{spec.label}（巡查时段外，或本轮"
                       "已结束）；expected a scan within a round's patrol window",
                       field="checkpoint")
    step = step_by_key(session, case.id, step_key(checkpoint))
    if step is None:
        raise NotFound(f"checkpoint：{case.number} 的检查点 {spec.checkpoints[checkpoint].label} "
                       "尚未开始（流程正在启动），请稍后再扫；expected the round's run to have "
                       "opened its steps", field="checkpoint")
    entry = {"staff_id": person.id, "name": person.name, "at": at.astimezone(UTC).isoformat()}
    step.context = {**(step.context or {}),
                    "check_ins": [*(step.context or {}).get("check_ins", []), entry]}
    audit(session, at=at, actor=f"staff:{person.id}", action="checked_in", case_id=case.id,
          step=step.key, checkpoint=checkpoint, waiting=step.status == StepStatus.WAITING)
    session.flush()
    return step


# --- the forms ------------------------------------------------------------------------------------

class CheckpointForm(Form):
    """The checkpoint's checklist: the items not in order, what was found, a note."""

    not_ok: CommaList = Field(default_factory=list,
                              description="不合格的检查项（逗号分隔；全部合格则不填）")
    finding: Literal["none", "broken_facility", "renovation_violation", "fire_safety",
                     "gas_smell", "vacant_defect"] = Field(
        "none", description="发现：none|broken_facility（转报修）|renovation_violation|"
                            "fire_safety（整改通知书）|gas_smell（应急）|vacant_defect（报保修中心）")
    unit: str = Field("", max_length=40,
                      description="房号：报修、商铺、空置房缺陷须填（公共设施填就近房号）")
    note: Short = Field("", description="情况说明")

    @model_validator(mode="after")
    def _what_a_finding_needs(self) -> CheckpointForm:
        if self.finding != "none" and not self.note:
            raise ValueError("note: 有发现时必须写明情况 (required when finding is not none)")
        if self.finding in ("broken_facility", "fire_safety", "vacant_defect") \
                and not self.unit:
            raise ValueError(f"unit: 发现 {self.finding} 须填写房号，如 1-1-101 "
                             "(required for this finding)")
        if self.unit and not re.fullmatch(r"[\w-]{1,40}", self.unit):
            raise ValueError("unit: 房号格式如 1-2-301 (expected a unit code)")
        return self


class FollowUpForm(Form):
    rectified: bool = Field(description="是否已整改")
    note: Short = Field("", description="复查情况")


def unit_code(session: Session, community_id: int, code: str) -> Unit:
    found = session.scalar(select(Unit).where(Unit.community_id == community_id,
                                              Unit.code == code))
    if found is None:
        raise NotFound(f"unit：没有房号 {code!r}；expected 楼栋-单元-房号 such as 1-2-301",
                       field="unit")
    return found


__all__ = ["ALL", "FINDINGS", "Area", "CheckpointForm", "Due", "FollowUpForm",
           "InspectionRecheck", "InspectionRound", "RoundIntake", "areas", "check_in",
           "checkpoints", "claim_round", "current_round", "due_rounds", "fire_times",
           "follow_up_key", "mark_recheck", "open_round", "plan_of", "round_end", "step_key"]
