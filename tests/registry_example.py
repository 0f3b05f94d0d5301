"""A throwaway procedure, 入住 (move-in), added the way README "Adding a procedure" says:
one registry entry, an input model with its hook, a policy section. (Its flow and its own
templates are left out: tests/test_registry.py runs no flow, and borrows repair's messages.)"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field
from sqlalchemy.orm import Session

from core.policy import Procedure as PolicySection
from core.procedures import Procedure, Step
from models import limits
from models.intake import Intake, Opening, Place
from models.validate import Phone, text

MOVE_IN = Procedure(
    name="move_in", prefix="RZ", zh="入住", en="move-in",
    flow="flows/move_in.py:move_in", intake="tests.registry_example:MoveInIntake",
    command="open", command_help="登记入住，交房。",
    description="入住 move-in procedure — keys handed over, one run per unit",
    templates="repair",
    steps=(Step("handover", "交房", "handover", "models.forms:NoteForm"),),
)

# procedures.move_in of the policy file: a window for every step the flow asks for.
POLICY_SECTION: dict[str, Any] = {"steps": {"handover": {"default": {"window": "2h"}}}}


class MoveInIntake(Intake):
    """A new resident moving in."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [dict(
        unit="1-1-101", resident="业主张三", phone="13800138000")]})

    unit: str = Field(description="房号，如 1-2-301")
    resident: Annotated[str, text("the new resident's name", limits.NAME)] = Field(
        description="入住人")
    phone: Phone = Field(description="联系电话（大陆手机号）")
    community: str | None = Field(None, description="项目编号，如 YGHY")

    def open(self, session: Session, place: Place, policy: PolicySection,
             now: datetime) -> Opening:
        return Opening(reporter=self.resident, phone=self.phone, category="move_in",
                       description=f"{self.unit} 入住交房", actor="front_desk",
                       audit={"resident": self.resident})
