"""Repair (报修) rules: its input and classification at intake, the dispatch choice."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field
from sqlalchemy.orm import Session

from core.errors import PropflowError
from core.policy import get_policy
from core.procedures import PRIORITIES
from core.vocabulary import Priority, Role
from models import directory, lifecycle, limits
from models.authority import staff_of
from models.cases import Case
from models.intake import Intake, Opening, Place
from models.validate import IntakeChannel, Phone, StaffRef, choice, text

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Procedure as PolicySection


class RepairIntake(Intake):
    """A repair request (报修)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [dict(
        unit="1-1-101", category="public_area", priority="medium", reporter="业主张三",
        phone="13800138000", description="楼道灯不亮")]})

    unit: str = Field(description="房号，如 1-2-301")
    category: Annotated[str, choice(lambda policy: policy.categories)] = Field(
        description="water_electric|equipment|public_area|in_unit|civil")
    priority: Annotated[str, choice(PRIORITIES)] = Field(description="high|medium|low")
    reporter: Annotated[str, text("the reporter's name", limits.NAME)] = Field(
        description="报修人")
    phone: Phone = Field(description="联系电话（大陆手机号）")
    description: Annotated[str, text("what is broken, and where", limits.DESCRIPTION)] = Field(
        description="报修内容")
    channel: IntakeChannel = Field("phone", description="phone|online|front_desk|patrol")
    community: str | None = Field(None, description="项目编号，如 YGHY")
    received_by: StaffRef = Field(None, description="接待人员工编号（首问责任人）")
    preferred_time: Annotated[str, text("a convenient time for the visit, e.g. 工作日18:00后",
                                        limits.NOTE)] | None = Field(
        None, description="方便上门维修的时间，如 工作日18:00后")
    defect_of: str | None = Field(None, description="入住验收缺陷：所属入住单号 RZ-...")

    def open(self, session: Session, place: Place, policy: PolicySection,
             now: datetime) -> Opening:
        """Classify: safety words raise the priority, the category says who and whether it
        is paid, the unit's warranty whether the owner pays."""
        receiver = None
        if self.received_by is not None:  # the first responder: any staff of the community
            receiver = staff_of(session, place.community_id, self.received_by,
                                field="received_by").id
        priority = self.priority
        # Safety words raise the priority (seed: a leak is dispatched at once).
        if priority != Priority.HIGH and any(w in self.description for w in policy.high_keywords):
            priority = Priority.HIGH
        rule = policy.categories[self.category]
        today = now.astimezone(ZoneInfo(get_policy().timezone)).date()
        warranty = place.unit.warranty_until if place.unit else None
        in_warranty = bool(warranty and warranty >= today)
        paid = rule.chargeable and not in_warranty
        data = {}
        if self._movein(session) is not None:
            # A defect found at move-in is never the owner's to pay; under warranty the
            # developer's warranty centre repairs it (PROCEDURES.md §4).
            paid = False
            data = {"defect_of": self.defect_of, "warranty_centre": in_warranty}
        return Opening(
            reporter=self.reporter, phone=self.phone, description=self.description,
            category=self.category, priority=priority, channel=self.channel, paid=paid,
            actor=f"staff:{receiver}" if receiver else "front_desk",
            data={"complex": rule.complex, "skills": rule.skills, "in_warranty": in_warranty,
                  # 首问责任制 (PROCEDURES.md §10): whoever received it owns it to the end
                  # and is copied on whatever goes wrong.
                  "received_by": receiver, "first_responder": receiver,
                  "preferred_time": self.preferred_time or "", **data},
            audit={"category": self.category, "priority": priority, "paid": paid,
                   "channel": self.channel},
        )


    @classmethod
    def details(cls, session: Session, case: Case) -> dict[str, Any]:
        return {"preferred_time": (case.data or {}).get("preferred_time") or None}

    def opened(self, session: Session, case: Case, now: datetime) -> None:
        movein = self._movein(session)
        if movein is not None:
            lifecycle.link(session, movein, case, "defect", now)

    def _movein(self, session: Session) -> Case | None:
        """The move-in whose inspection found this defect, if one is named."""
        if not self.defect_of:
            return None
        found = directory.case(session, self.defect_of)
        if found.procedure != "movein":
            raise PropflowError(f"defect_of：{self.defect_of} 不是入住单；expected a move-in "
                                "number RZ-...", field="defect_of")
        return found


def rating_due(completed: datetime | None) -> datetime | None:
    """The owner's rating is due the callback window after completion, not after the owner
    accepted the work (PROCEDURES.md §10: "报修完成后24小时内…评分")."""
    if completed is None:
        return None
    policy = get_policy()
    rule = policy.rule("repair", "callback", None)
    if rule.window is None:
        return None
    return policy.business_calendar().add(completed, rule.window, rule.calendar)


def choose_technician(session: Session, case: Case) -> int | None:
    """By skill, then load, in the case's community; None sends it to a supervisor. A
    move-in defect under warranty goes to the developer's warranty centre."""
    if case.data.get("warranty_centre"):
        centre = directory.people_in_role(session, case.community_id, Role.DEVELOPER_WARRANTY)
        if centre:
            return centre[0].id
    if case.data.get("complex"):
        return None
    skills = set(case.data.get("skills", []))
    fits = [p for p in directory.people_in_role(session, case.community_id, Role.TECHNICIAN)
            if p.skill_set & skills]
    if not fits:
        return None
    return min(fits, key=lambda p: (directory.open_load(session, p.id), p.id)).id
