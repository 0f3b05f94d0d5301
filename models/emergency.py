"""Emergency (应急 / 突发事件) rules: the report, who is called out, office-incident classes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.policy import Procedure as PolicySection
from core.vocabulary import Priority
from models import directory, limits
from models.intake import Intake, Opening, Place
from models.org import Building
from models.validate import CommaList, OptionalPhone, choice, text


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
                  "office_class": info.office_class,
                  "fanout": [d.model_dump() for d in info.fanout]},
            audit={"kind": self.kind, "location": self.location, "buildings": self.buildings},
        )
