"""Intake, once for every procedure: check, place, number, record, tell the reporter.

Each procedure declares (core/procedures.py) its input model, a subclass of Intake in its
own rules module: the fields, their checks (models.validate) and an example; its `open`
hook says what differs (a repair's classification and warranty, a complaint's first
responder, an emergency's buildings and call-outs). The same fields make the CLI's options
(propflow.cli) and, later, the HTTP API's body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.orm import Session

from core import procedures
from core.errors import PropflowError
from core.policy import get_policy
from core.vocabulary import CaseStatus, Channel, Priority
from models import directory, notices
from models.cases import Case
from models.numbers import next_number
from models.org import Unit
from models.outbox import audit

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Procedure as PolicySection


@dataclass(frozen=True)
class Place:
    community_id: int
    unit: Unit | None = None


@dataclass
class Opening:
    """What a procedure's hook decides about a new case; the rest is common."""

    reporter: str
    description: str
    category: str
    actor: str  # who opened it, on the timeline
    phone: str = ""  # told "received" when there is one
    priority: str = Priority.MEDIUM
    channel: str = Channel.PHONE
    paid: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)  # case_opened's detail
    # The day its number counts in, when not the day it is recorded: a round made late
    # (the training clock's catch-up) is numbered in its own day's series.
    numbered_at: datetime | None = None


class Intake(BaseModel):
    """A procedure's input. Fields in the order they are checked; a field's description is
    its CLI help. `unit` and `community` place the case, unless `place` is overridden."""

    model_config = ConfigDict(extra="forbid")

    def place(self, session: Session) -> Place:
        # unit and community are declared by the procedure's model, when it has them.
        found = directory.unit(session, getattr(self, "unit"),  # noqa: B009
                               getattr(self, "community", None))
        return Place(found.community_id, found)

    def open(self, session: Session, place: Place, policy: PolicySection,
             now: datetime) -> Opening:
        raise NotImplementedError

    def opened(self, session: Session, case: Case, now: datetime) -> None:
        """After the case has its id and number (links to other cases)."""

    @classmethod
    def details(cls, session: Session, case: Case) -> dict[str, Any]:
        """What `cases show` adds for this procedure; masked, never a phone or ID number."""
        return {}


@cache
def model_of(name: str) -> type[Intake]:
    """The procedure's input model, as the registry names it."""
    spec = procedure(name)
    module, _, cls = spec.intake.partition(":")
    found = getattr(import_module(module), cls, None)
    if not (isinstance(found, type) and issubclass(found, Intake)):
        raise LookupError(f"{spec.name}: intake {spec.intake!r} (core/procedures.py) is not "
                          "a models.intake.Intake")
    return found


def procedure(name: str) -> procedures.Procedure:
    try:
        return procedures.get(name)
    except KeyError:
        raise PropflowError(f"procedure：未知的流程 {name!r}；expected one of "
                            f"{sorted(procedures.PROCEDURES)}", field="procedure") from None


def example(name: str) -> dict[str, Any]:
    """The input model's first example (the demo company's data): docs and the test kit."""
    extra = model_of(name).model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    first = examples[0] if isinstance(examples, list) and examples else None
    return dict(first) if isinstance(first, dict) else {}


def check(name: str, fields: dict[str, Any]) -> Intake:
    """The fields as the procedure's input model, or an error naming the first bad one."""
    model = model_of(name)
    section = get_policy().procedures[name]
    try:
        return model.model_validate(fields, context={"procedure": section})
    except ValidationError as exc:
        err = exc.errors()[0]
        name_ = ".".join(str(p) for p in err["loc"]) or None
        expected = ", ".join(f"{n}{'' if f.is_required() else '?'}"
                             for n, f in model.model_fields.items())
        what = {"missing": "缺少", "extra_forbidden": "不是该流程的字段"}.get(
            err["type"], err["msg"])
        raise PropflowError(f"{name_ or '?'}：{what}；expected fields {expected}（? 为选填）",
                            field=name_) from None


def open_case(session: Session, name: str, fields: dict[str, Any], now: datetime) -> Case:
    """Check, number and record a new case of the procedure; the reporter is told at once."""
    spec = procedure(name)
    form = check(spec.name, fields)
    place = form.place(session)
    policy = get_policy()
    opening = form.open(session, place, policy.procedures[spec.name], now)
    case = Case(
        number=next_number(session, spec.prefix, opening.numbered_at or now, policy.timezone),
        procedure=spec.name,
        community_id=place.community_id, unit_id=place.unit.id if place.unit else None,
        status=CaseStatus.OPEN, category=opening.category, priority=opening.priority,
        paid=opening.paid, channel=opening.channel, reporter_name=opening.reporter,
        reporter_phone=opening.phone, description=opening.description, created_at=now,
        data=opening.data,
    )
    session.add(case)
    session.flush()
    audit(session, at=now, actor=opening.actor, action="case_opened", case_id=case.id,
          number=case.number, **opening.audit)
    form.opened(session, case, now)
    if case.reporter_phone:
        notices.tell(session, case=case, event="received", to=[notices.owner_recipient(case)],
                     key=f"case:{case.id}:received", now=now)
    return case
