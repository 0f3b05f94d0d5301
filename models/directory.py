"""Finding people and places by what users type."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.errors import NotFound, PropflowError
from core.roles import ROLES
from core.vocabulary import Role, StepStatus
from models.cases import Case, Step
from models.org import Community, Staff, StaffRole, Unit

# Ids are INTEGER columns: PostgreSQL refuses to compare one with a number past 32 bits.
MAX_ID = 2**31 - 1


def _pk(value: int | str) -> int | None:
    """An id as typed; None when it cannot be one."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def staff(session: Session, staff_id: int | str, *, field: str = "staff") -> Staff:
    pk = _pk(staff_id)
    found = session.get(Staff, pk) if pk else None
    if found is None or not found.active:
        raise NotFound(f"{field}：没有编号为 {staff_id!r} 的在职员工；expected a staff id "
                       "from `propflow demo seed`", field=field)
    return found


def roles_of(person: Staff, community_id: int) -> set[str]:
    return {r.role for r in person.roles if r.community_id in (community_id, None)}


def people_in_role(session: Session, community_id: int, role: str) -> list[Staff]:
    rows = session.scalars(
        select(Staff)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(StaffRole.role == role, Staff.active.is_(True))
        .where(or_(StaffRole.community_id == community_id, StaffRole.community_id.is_(None)))
        .order_by(Staff.id)
    )
    return list(dict.fromkeys(rows))


def community(session: Session, code: str) -> Community:
    found = session.scalars(select(Community).where(Community.code == code)).first()
    if found is None:
        codes = list(session.scalars(select(Community.code).order_by(Community.code)))
        raise NotFound(f"community：没有项目 {code!r}；expected one of {codes}",
                       field="community")
    return found


def role(value: str, field: str = "role") -> str:
    """A role a step can wait on: a staff role, or the owner (recorded by the front desk)."""
    known = [*ROLES, Role.OWNER.value]
    if value not in known:
        raise PropflowError(f"{field}：没有角色 {value!r}；expected one of {known}", field=field)
    return value


def unit(session: Session, code: str, community_code: str | None = None) -> Unit:
    query = select(Unit).where(Unit.code == code)
    if community_code:  # an unknown project is named as such, not blamed on the unit
        query = query.where(Unit.community_id == community(session, community_code).id)
    found = list(session.scalars(query))
    if not found:
        raise NotFound(f"unit：没有房号 {code!r}；expected 楼栋-单元-房号 such as 1-2-301",
                       field="unit")
    if len(found) > 1:
        raise NotFound(f"unit：房号 {code!r} 在多个项目中存在；expected --community", field="unit")
    return found[0]


def case(session: Session, number: str) -> Case:
    found = session.scalars(select(Case).where(Case.number == number)).first()
    if found is None and _pk(number):
        found = session.get(Case, _pk(number))
    if found is None:
        raise NotFound(f"case：没有工单 {number!r}；expected a number such as BX-20261124-0001",
                       field="case")
    return found


def step(session: Session, step_id: int | str) -> Step:
    pk = _pk(step_id)
    found = session.get(Step, pk) if pk else None
    if found is None:
        raise NotFound(f"step：没有编号为 {step_id!r} 的步骤；expected a step id from "
                       "`propflow steps list`", field="step")
    return found


def open_load(session: Session, staff_id: int) -> int:
    """How many waiting steps a person holds: the load dispatch balances."""
    return len(list(session.scalars(
        select(Step.id).where(Step.assignee_id == staff_id, Step.status == StepStatus.WAITING)
    )))
