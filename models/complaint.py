"""Complaint (投诉) rules: intake with a first responder, who investigates at which level."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

from pydantic import ConfigDict, Field
from sqlalchemy.orm import Session

from core import procedures
from core.errors import PropflowError
from core.policy import get_policy
from core.vocabulary import Role
from models import directory, lifecycle, limits, notices
from models.authority import staff_of
from models.cases import Case
from models.intake import Intake, Opening, Place
from models.org import Staff
from models.validate import IntakeChannel, Phone, StaffRef, choice, text

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Policy
    from core.policy import Procedure as PolicySection


class ComplaintIntake(Intake):
    """A complaint (投诉): whoever receives it is its first responder."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [dict(
        unit="1-1-101", complainant="业主张三", phone="13800138000", category="environment",
        description="垃圾桶三天没清")]})

    unit: str = Field(description="房号，如 1-2-301")
    complainant: Annotated[str, text("the complainant's name", limits.NAME)] = Field(
        description="投诉人")
    phone: Phone = Field(description="联系电话（大陆手机号）")
    category: Annotated[str, choice(lambda policy: policy.categories)] = Field(
        description="service|repair|environment|security|parking|noise|fees|other")
    description: Annotated[str, text("what the complaint is about", limits.DESCRIPTION)] = \
        Field(description="投诉内容")
    channel: IntakeChannel = Field("phone", description="phone|online|front_desk|patrol")
    received_by: StaffRef = Field(None, description="首问责任人员工编号")
    repair: str | None = Field(None, description="所投诉的报修工单号")
    community: str | None = Field(None, description="项目编号，如 YGHY")

    def open(self, session: Session, place: Place, policy: PolicySection,
             now: datetime) -> Opening:
        responder = _first_responder(session, place.community_id, self.received_by)
        self._about(session)  # a wrong repair number is refused before anything is written
        return Opening(
            reporter=self.complainant, phone=self.phone, description=self.description,
            category=self.category, channel=self.channel, actor=f"staff:{responder.id}",
            data={"first_responder": responder.id,
                  "department": policy.categories[self.category].department or Role.CS_SUPERVISOR},
            audit={"category": self.category, "first_responder": responder.id},
        )

    def opened(self, session: Session, case: Case, now: datetime) -> None:
        about = self._about(session)
        if about is not None:
            lifecycle.link(session, case, about, "complaint_about", now)
        # Every complaint is recorded and reported to the superior (PROCEDURES.md §10).
        notices.tell(session, case=case, event="reported", key=f"case:{case.id}:reported",
                     now=now, to=notices.role_recipients(session, case, Role.CS_SUPERVISOR))

    def _about(self, session: Session) -> Case | None:
        """The repair complained about, if one is named."""
        if not self.repair:
            return None
        about = directory.case(session, self.repair)
        if about.procedure != "repair":
            prefix = procedures.get("repair").prefix
            raise PropflowError(f"repair：{self.repair} 不是报修工单；expected a repair number "
                                f"{prefix}-...", field="repair")
        return about


def _first_responder(session: Session, community_id: int,
                     received_by: int | str | None) -> Staff:
    if received_by is not None:
        # Whoever receives it owns it (首问责任制), whatever their role: any active staff of
        # the community, or of the company, but not a stranger to the complainant's community.
        return staff_of(session, community_id, received_by, field="received_by")
    desk = directory.people_in_role(session, community_id, Role.CSR)
    if not desk:
        raise PropflowError("received_by：该项目没有客服专员；expected --received-by STAFF",
                            field="received_by")
    return desk[0]


def reply_by(acknowledged: datetime | None, policy: Policy | None = None) -> str:
    """When the complainant is promised a reply, told at acknowledgement: reply_within of
    clock time after it (PROCEDURES.md §10: "应告知回复时间"); "" if the policy sets none."""
    policy = policy or get_policy()
    within = policy.procedures["complaint"].reply_within
    if acknowledged is None or within is None:
        return ""
    return notices.local(acknowledged + within, policy.timezone)


def investigator(department: str, level: int, policy: Policy | None = None) -> str:
    """Level 0 is the responsible department; each refusal goes one level up the ladder of
    procedures.complaint.reopen_levels (default: the CS supervisor, then the manager)."""
    levels = (policy or get_policy()).procedures["complaint"].reopen_levels
    ladder = [department, *[r for r in levels if r != department]]
    return ladder[min(level, len(ladder) - 1)]


def needs_approval(values: Mapping[str, object], policy: Policy | None = None) -> bool:
    """A compensation above procedures.complaint.approval_above yuan (seed: any), or an
    exception, needs the project manager."""
    above = (policy or get_policy()).procedures["complaint"].approval_above
    compensation = Decimal(str(values.get("compensation") or 0))
    return compensation > above or bool(values.get("exception"))


def opens_complaint(rating: int | None, policy: Policy | None = None) -> bool:
    """A repair's callback rated procedures.repair.complaint_rating or lower (seed: 1 or 2
    of 5) is a complaint in all but name: it opens one, linked to the work order."""
    if rating is None:  # not reached, or the owner gave no rating
        return False
    return rating <= (policy or get_policy()).procedures["repair"].complaint_rating
