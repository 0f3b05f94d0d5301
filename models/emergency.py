"""Emergency (应急 / 突发事件) rules: the report, who is called out, office-incident classes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from pydantic import ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import labels
from core.errors import NotFound
from core.policy import get_policy
from core.vocabulary import Priority
from models import authority, directory, limits, notices
from models.cases import Case
from models.directory import roles_of
from models.forms import Form, Long, Short
from models.intake import Intake, Opening, Place
from models.org import Building, Staff
from models.outbox import audit
from models.validate import CommaList, OptionalPhone, choice, text

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Procedure as PolicySection


class EmergencyIntake(Intake):
    """An emergency report (突发事件): where, what kind, which buildings' households hear."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [dict(
        kind="gas_leak", community="YGHY", location="1号楼2单元", reporter="巡逻岗马超",
        buildings=["1"])]})

    kind: Annotated[str, choice(lambda policy: policy.kinds)] = Field(
        description="fire|gas_leak|water_outage|power_outage|disaster|security|office_a|"
                    "office_b|office_c")
    community: str = Field(description="项目编号，如 YGHY")
    location: Annotated[str, text("where it is happening, e.g. 2号楼地下车库",
                                  limits.LOCATION)] = Field(description="地点")
    reporter: Annotated[str, text("who reports it", limits.NAME)] = Field(description="报告人")
    buildings: CommaList = Field(default_factory=list, description="受影响楼栋，如 1,2")
    phone: OptionalPhone = Field("", description="报告人电话（可选）")

    def place(self, session: Session) -> Place:
        return Place(directory.community(session, self.community).id)

    def open(self, session: Session, place: Place, policy: PolicySection,
             now: datetime) -> Opening:
        known = set(session.scalars(select(Building.code)
                                    .where(Building.community_id == place.community_id)))
        unknown = [b for b in self.buildings if b not in known]
        if unknown:
            raise NotFound(f"buildings：项目 {self.community} 没有楼栋 {unknown}；expected some "
                           f"of {sorted(known)}", field="buildings")
        info = policy.kinds[self.kind]
        return Opening(
            reporter=self.reporter, phone=self.phone, description=self.location,
            category=self.kind, priority=Priority.HIGH, actor="reporter",
            data={"location": self.location, "buildings": self.buildings,
                  "office_class": info.office_class, "hazard_check": info.hazard_check,
                  "fanout": [d.model_dump() for d in info.fanout]},
            audit={"kind": self.kind, "location": self.location, "buildings": self.buildings},
        )


class HazardCheckForm(Form):
    """After the incident, similar hazards are checked everywhere (事后全面检查同类隐患)."""

    findings: Long = Field(min_length=1, description="同类隐患排查结果")
    hazards_found: bool = Field(False, description="是否发现同类隐患")
    actions: Short = Field("", description="整改措施")


class OfficeReceiveForm(Form):
    """The front desk receives office-area visitors in the set reception area."""

    media_present: bool = Field(False, description="现场是否有媒体")
    contained: bool = Field(True, description="前台能否稳定局面（B类：不能则转人事）")
    note: Short = ""


def report_skipped_levels(session: Session, case: Case, now: datetime) -> int:
    """After the incident, whoever a level above skipped (越级) is told who acted in their
    place (PROCEDURES.md §10: "事后应向上级汇报"); returns the steps reported."""
    reported = 0
    for step in case.steps:
        decision = step.decision
        decider = session.get(Staff, decision.decided_by) if decision and decision.decided_by \
            else None
        if decider is None or authority.rule_allowing(step, decider) != "skip_level":
            continue
        chain = authority.chain_of(step)
        held = roles_of(decider, case.community_id)
        level = next(i for i, role in enumerate(chain) if role in held)
        skipped = [step.role, *chain[step.level:level]]
        to = [r for role in dict.fromkeys(skipped)
              for r in notices.role_recipients(session, case, role)]
        lang = get_policy().lang
        notices.tell(session, case=case, event="skipped", to=to,
                     key=f"case:{case.id}:skipped:{step.id}", now=now,
                     step_label=labels.step(case.procedure, step.kind, lang),
                     decider=decider.name, decider_role=labels.role(chain[level], lang),
                     decided_at=notices.local(step.decided_at))
        audit(session, at=now, actor="flow", action="skipped_levels_told", case_id=case.id,
              step=step.key, skipped=skipped, by=decider.id)
        reported += 1
    return reported
