"""Test helpers for the staff pages: a signed-in client, and cases with steps opened as
their runs would open them (no Prefect), one of them escalated to the project manager."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.responses import Response

from core.clock import ManualClock
from models import directory, steps
from models.cases import Escalation, Step
from models.db import unit_of_work
from models.steps import record_escalation
from propflow import actions, sla
from propflow.web import auth

REPAIR = {"unit": "1-1-101", "category": "public_area", "priority": "medium",
          "reporter": "业主张三", "phone": "13800138000", "description": "楼道灯不亮"}
COMPLAINT = {"unit": "1-2-301", "complainant": "业主李四", "phone": "13900139000",
             "category": "environment", "description": "垃圾三天没清"}


def session_cookie(staff_id: int | None, *, step_id: int | None = None,
                   case_id: int | None = None) -> tuple[str, str]:
    """A signed session cookie as sign-in (or a one-tap link) would set it: (value, csrf)."""
    response = Response()
    csrf = auth.start_session(response, staff_id, step_id=step_id, case_id=case_id)
    value = re.search(rf"{auth.COOKIE}=([^;]+)", response.headers["set-cookie"])
    assert value
    return value.group(1), csrf


def client_as(staff_id: int | None, **link: int) -> tuple[TestClient, str]:
    from propflow.web.app import create_app

    client = TestClient(create_app(), follow_redirects=False)
    value, csrf = session_cookie(staff_id, **link)
    client.cookies.set(auth.COOKIE, value)
    return client, csrf


def open_step(clock: ManualClock, number: str, key: str, kind: str, role: str,
              assignee: int | None = None, context: dict[str, Any] | None = None) -> int:
    with unit_of_work() as session:
        case = directory.case(session, number)
        return steps.open_step(session, case=case, key=key, kind=kind, role=role,
                               assignee_id=assignee, now=clock.now(), context=context).id


def lapse(clock: ManualClock, step_id: int) -> None:
    """Past the step's window, one SLA pass, and the lapse recorded as the run would."""
    with unit_of_work() as session:
        due = session.get(Step, step_id).due_at
    clock.advance(due - clock.now() + timedelta(seconds=1))
    assert sla.tick(start_pending=False).lapsed >= 1
    with unit_of_work() as session:
        for escalation in session.scalars(select(Escalation).where(
                Escalation.step_id == step_id, Escalation.handled_at.is_(None))):
            record_escalation(session, escalation, clock.now())


def repair(**fields: Any) -> str:
    return str(actions.open_repair(start_run=False, **(REPAIR | fields))["number"])


def complaint(**fields: Any) -> str:
    return str(actions.open_complaint(start_run=False, **(COMPLAINT | fields))["number"])


def manager_scene(clock: ManualClock, demo: dict[str, Any]) -> dict[str, Any]:
    """What a project manager's inbox holds: a repair's accept escalated twice (to them),
    a complaint's approval waiting on their role; and a step that is not theirs."""
    by_role = demo["by_role"]
    escalated_case = repair()
    accept = open_step(clock, escalated_case, "accept#1", "accept", "technician",
                       by_role["technician"])
    lapse(clock, accept)  # 客服主管, level 1
    lapse(clock, accept)  # 项目经理, level 2
    approval_case = complaint()
    investigate = open_step(clock, approval_case, "investigate#1", "investigate", "cleaning")
    actions.decide(investigate, by_role["cleaning"],
                   {"findings": "漏清", "proposed_resolution": "补偿", "compensation": "200"})
    approve = open_step(clock, approval_case, "approve_resolution#1", "approve_resolution",
                        "project_manager", context={"approves": "investigate#1"})
    other_case = repair(unit="1-1-102", description="水管漏水")
    other = open_step(clock, other_case, "accept#1", "accept", "technician",
                      by_role["technician"])
    return {"accept": accept, "accept_case": escalated_case, "approve": approve,
            "approve_case": approval_case, "other": other, "other_case": other_case,
            "manager": by_role["project_manager"]}
