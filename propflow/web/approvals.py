"""The approval operations on a step page (claim, 转办, 委派, 加签, 抄送, 驳回, 撤回): each a
button or a small form posting to /steps/{id}/{operation}, carried out by the function of
the same name in propflow.actions, so the rules are the CLI's and the API's.

An operation appears once propflow.actions has it; what it asks for is declared here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select

from core.errors import PropflowError
from models.cases import Case
from models.db import unit_of_work
from models.org import Staff, StaffRole
from propflow import actions


@dataclass(frozen=True)
class Operation:
    name: str  # the propflow.actions function, and the last part of the URL
    zh: str
    en: str
    needs: tuple[str, ...] = ()  # posted fields: "to" (a colleague), "reason", "position"


OPERATIONS = (
    Operation("claim", "认领", "claim"),
    Operation("unclaim", "退回认领", "unclaim"),
    Operation("transfer", "转办", "transfer", ("to", "reason")),
    Operation("delegate", "委派", "delegate", ("to", "reason")),
    Operation("add_signer", "加签", "add signer", ("to", "position", "reason")),
    Operation("cc", "抄送", "copy to", ("to",)),
    Operation("send_back", "驳回", "send back", ("reason",)),
    Operation("withdraw", "撤回", "withdraw", ("reason",)),
)
BY_NAME = {op.name: op for op in OPERATIONS}


def _function(name: str) -> Any:
    found = getattr(actions, name, None)
    return found if callable(found) else None


def colleagues(case_number: str, staff_id: int) -> list[dict[str, Any]]:
    """Active staff of the case's community (and company level), but the viewer: whom a
    step can be transferred, delegated, added or copied to."""
    with unit_of_work(write=False) as session:
        community = session.scalar(select(Case.community_id).where(Case.number == case_number))
        people = session.scalars(
            select(Staff).join(StaffRole, StaffRole.staff_id == Staff.id)
            .where(Staff.active.is_(True), Staff.id != staff_id,
                   or_(StaffRole.community_id == community, StaffRole.community_id.is_(None)))
            .order_by(Staff.id))
        return [{"id": p.id, "name": p.name,
                 "roles": sorted({r.role for r in p.roles
                                  if r.community_id in (community, None)})}
                for p in dict.fromkeys(people)]


def _offered(op: Operation, step: dict[str, Any], staff_id: int) -> bool:
    """Whether the page offers the operation to this person; the rules behind it are still
    models.operations', which refuse with the reason whatever is posted."""
    mine = next((p["rule"] for p in step.get("may_decide", []) if p["id"] == staff_id), None)
    if op.name == "withdraw":
        return bool(step.get("decision")) and step["decision"]["by"] == staff_id
    if step["status"] != "waiting":
        return False
    if op.name == "claim":
        return step["assignee"] is None and mine == "role"
    if op.name == "unclaim":
        return bool(step["assignee"] == staff_id)
    if op.name in ("transfer", "send_back"):  # a stand-in or an escalated level may too
        return mine is not None
    return mine in ("assignee", "role")


def available(step: dict[str, Any], staff_id: int) -> dict[str, Any]:
    """The operations this page offers, and the colleagues its pickers list."""
    ops = [op for op in OPERATIONS if _function(op.name) and _offered(op, step, staff_id)]
    needs_people = any("to" in op.needs for op in ops)
    return {"list": ops,
            "colleagues": colleagues(step["case"], staff_id) if needs_people else []}


def run(name: str, step_id: int, staff_id: int, posted: dict[str, Any]) -> dict[str, Any]:
    op = BY_NAME.get(name)
    function = _function(name) if op else None
    if op is None or function is None:
        raise PropflowError(f"operation：没有操作 {name!r}；expected one of "
                            f"{[o.name for o in OPERATIONS if _function(o.name)]}",
                            field="operation")
    actions.sees_step(step_id, staff_id)  # out of their communities: not found
    accepted = inspect.signature(function).parameters
    kwargs: dict[str, Any] = {}
    for field in op.needs:
        if field not in accepted:
            continue
        raw = str(posted.get(field, "")).strip()
        if field == "to":
            if not raw.isdigit():
                raise PropflowError(f"to：请选择同事；expected a colleague's staff id"
                                    f"{f', got {raw[:20]!r}' if raw else ''}", field="to")
            kwargs[field] = int(raw)
        elif raw or accepted[field].default is inspect.Parameter.empty:
            kwargs[field] = raw  # a reason the rule requires is refused by it, naming it
    done: dict[str, Any] = function(step_id, staff_id, **kwargs)
    return done
