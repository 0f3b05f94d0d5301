"""What a member of staff may see: the cases of the communities where they hold a role.

A company-level role (community_id NULL in staff_roles: 公司客服中心, HR) sees every
community of their company. Seeing is the only thing decided here; who may decide a step is
models.authority's (check_decider). A case outside someone's scope is answered as if it did
not exist (NotFound, 404 over HTTP), so its number, steps and people are not given away.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, select
from sqlalchemy.orm import Session

from core.errors import NotFound
from models.cases import Case, Step
from models.org import Community, Staff


def community_ids(session: Session, person: Staff) -> set[int]:
    """The communities whose cases the person sees; none once they have left."""
    if not person.active:
        return set()
    ids = {r.community_id for r in person.roles if r.community_id is not None}
    if any(r.community_id is None for r in person.roles):
        ids |= set(session.scalars(select(Community.id).where(
            Community.company_id == person.company_id)))
    return ids


def sees(session: Session, person: Staff, community_id: int) -> bool:
    return community_id in community_ids(session, person)


def cases_where(session: Session, person: Staff) -> ColumnElement[bool]:
    """A WHERE clause on Case keeping the cases the person sees (for lists and counts)."""
    ids = community_ids(session, person)
    return Case.community_id.in_(ids) if ids else false()


def case(session: Session, person: Staff, found: Case) -> Case:
    """The case, or the same NotFound as for a number that does not exist."""
    if not sees(session, person, found.community_id):
        raise NotFound(f"case：没有工单 {found.number!r}；expected a number such as "
                       "BX-20261124-0001", field="case")
    return found


def step(session: Session, person: Staff, found: Step) -> Step:
    """The step, or the same NotFound as for an id that does not exist."""
    if not sees(session, person, found.case.community_id):
        raise NotFound(f"step：没有编号为 {found.id!r} 的步骤；expected a step id from "
                       "`propflow steps list`", field="step")
    return found
