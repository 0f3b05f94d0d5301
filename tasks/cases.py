"""Tasks every procedure uses: link the run, tell the reporter, broadcast, close."""

from __future__ import annotations

from typing import Any

from prefect.runtime import flow_run
from sqlalchemy.orm import Session

from core.clock import now
from core.vocabulary import CaseStatus
from models import broadcast, lifecycle, notices
from models.cases import Case
from models.db import unit_of_work
from tasks.retries import db_task


def load(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    assert case is not None, f"case {case_id} missing"
    return case


@db_task(name="intake")
def intake(case_id: int) -> dict[str, Any]:
    """Link the case to this run; hand the flow what it needs to choose its path."""
    with unit_of_work() as session:
        case = load(session, case_id)
        run_id = flow_run.get_id()
        if run_id and case.flow_run_id != run_id:
            case.flow_run_id = run_id
        if case.status == CaseStatus.OPEN:
            case.status = CaseStatus.IN_PROGRESS
        return {"number": case.number, "priority": case.priority, "paid": case.paid,
                "category": case.category, "assignee_id": case.assignee_id,
                "status": case.status, **case.data}


@db_task(name="tell-reporter", task_run_name="tell-reporter {event}")
def tell_reporter(case_id: int, event: str, key: str, **extra: Any) -> None:
    with unit_of_work() as session:
        case = load(session, case_id)
        notices.tell(session, case=case, event=event, to=[notices.owner_recipient(case)],
                     key=f"case:{case_id}:{key}", now=now(), **extra)


@db_task(name="tell-role", task_run_name="tell-role {role} {event}")
def tell_role(case_id: int, role: str, event: str, key: str, **extra: Any) -> None:
    with unit_of_work() as session:
        case = load(session, case_id)
        notices.tell(session, case=case, event=event, key=f"case:{case_id}:{key}", now=now(),
                     to=notices.role_recipients(session, case, role), **extra)


@db_task(name="broadcast", task_run_name="broadcast {event}")
def tell_residents(case_id: int, event: str, key: str, **extra: Any) -> int:
    """Every household of the affected buildings, in one transaction."""
    with unit_of_work() as session:
        return broadcast.to_residents(session, load(session, case_id), event,
                                      key=f"case:{case_id}:{key}", now=now(), **extra)


@db_task(name="close-case")
def close_case(case_id: int, outcome: str) -> None:
    with unit_of_work() as session:
        lifecycle.close(session, load(session, case_id), outcome, now())
