"""The JSON API in tests: the app in process, bearer tokens (tests/webkit.py), a second
community with its own staff, and a repair whose first step is open as its run would open it
(no Prefect: its start finds Prefect away, as it would in production)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.clock import now
from models import steps
from models.accounts import ApiToken
from models.cases import Case, Decision, Step
from models.db import unit_of_work
from models.org import Building, Community, Company, Staff, StaffRole, Unit
from models.outbox import AuditEvent, Notification
from models.repair import choose_technician
from propflow import actions
from tasks import runs
from tests.webkit import bearer  # noqa: F401 - the tests' one way to a token

# 清溪园: the demo company's second community, staffed by its own people.
OTHER = "QXY"
OTHER_STAFF = [("钱多", "csr"), ("孔明", "cs_supervisor"), ("韩梅", "tech_supervisor"),
               ("曹操", "technician"), ("袁华", "project_manager")]


def app_client() -> TestClient:
    from propflow.web.app import create_app

    return TestClient(create_app())


def second_community() -> dict[str, int]:
    """清溪园 with building 1, its units 1-1-101..1-1-302, and staff holding its roles alone:
    role -> staff id."""
    by_role: dict[str, int] = {}
    with unit_of_work() as session:
        company = session.scalars(select(Company).where(Company.code == "DEMO")).one()
        community = Community(company_id=company.id, code=OTHER, name="清溪园")
        session.add(community)
        session.flush()
        building = Building(community_id=community.id, code="1", name="1号楼")
        session.add(building)
        session.flush()
        for floor in (1, 2, 3):
            for room in (1, 2):
                session.add(Unit(community_id=community.id, building_id=building.id,
                                 code=f"1-1-{floor}0{room}"))
        for name, role in OTHER_STAFF:
            person = Staff(company_id=company.id, name=name, skills="plumbing,electrical,civil")
            session.add(person)
            session.flush()
            session.add(StaffRole(staff_id=person.id, community_id=community.id, role=role))
            by_role[role] = person.id
    return by_role


@pytest.fixture
def no_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting a run finds Prefect away: the case is kept, and the SLA clock would start
    its run later (tasks.runs.start_claimed)."""
    monkeypatch.setattr(runs, "start", lambda procedure, case_id, number: None)


def first_step(number: str) -> int:
    """Open the repair's first step as its run does: accept for the technician auto-dispatch
    picks, else dispatch for the 技术主管."""
    with unit_of_work() as session:
        case = session.scalars(select(Case).where(Case.number == number)).one()
        technician = choose_technician(session, case)
        if technician is None:
            step = steps.open_step(session, case=case, key="dispatch#1", kind="dispatch",
                                   role="tech_supervisor", now=now())
        else:
            step = steps.open_step(session, case=case, key="accept#1", kind="accept",
                                   role="technician", now=now(), assignee_id=technician)
        return step.id


def open_repair(**fields: Any) -> str:
    """A repair opened in the record (its run not started); its number."""
    from tests.flowkit import REPAIR

    return str(actions.open_repair(start_run=False, **(REPAIR | fields))["number"])


def counts() -> dict[str, int]:
    """What a refused request must leave as it was."""
    with unit_of_work() as session:
        out = {table.__name__: session.scalar(select(func.count()).select_from(table)) or 0
               for table in (Case, Step, Decision, AuditEvent, Notification, ApiToken)}
        out["read"] = session.scalar(select(func.count()).select_from(Notification).where(
            Notification.read_at.is_not(None))) or 0
        out["decided"] = session.scalar(select(func.count()).select_from(Step).where(
            Step.status != "waiting")) or 0
        out["assigned"] = session.scalar(select(func.count()).select_from(Step).where(
            Step.assignee_id.is_not(None))) or 0
        return out
