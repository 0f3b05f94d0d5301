"""Repair side effects: intake, dispatch, owner messages, closing. Idempotent under replay."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from models import directory, notices, repair
from models.cases import Case
from models.db import unit_of_work
from models.outbox import audit
from propflow.clock import now


def _case(session: Any, case_id: int) -> Case:
    case = session.get(Case, case_id)
    assert case is not None, f"case {case_id} missing"
    return case


@task(name="intake", cache_policy=NO_CACHE)
def intake(case_id: int) -> dict[str, Any]:
    """Link the case to this run; hand the flow what it needs to choose its path."""
    with unit_of_work() as session:
        case = _case(session, case_id)
        run_id = flow_run.get_id()
        if run_id and case.flow_run_id != run_id:
            case.flow_run_id = run_id
        if case.status == "open":
            case.status = "in_progress"
        return {"number": case.number, "priority": case.priority, "paid": case.paid,
                "assignee_id": case.assignee_id, "status": case.status}


@task(name="auto-dispatch", cache_policy=NO_CACHE)
def auto_dispatch(case_id: int) -> int | None:
    """Choose once and remember: a replay must not pick someone else."""
    with unit_of_work() as session:
        case = _case(session, case_id)
        if "auto_dispatch" not in case.data:
            chosen = repair.choose_technician(session, case)
            case.data = {**case.data, "auto_dispatch": chosen}
            audit(session, at=now(), actor="system", action="auto_dispatch", case_id=case_id,
                  technician=chosen)
        return case.data["auto_dispatch"]


@task(name="assign", cache_policy=NO_CACHE)
def assign(case_id: int, technician_id: int) -> str:
    """Make the technician the case's assignee; returns their name for the owner's message."""
    with unit_of_work() as session:
        case = _case(session, case_id)
        person = directory.staff(session, technician_id, field="technician")
        if case.assignee_id != technician_id:
            audit(session, at=now(), actor="flow", action="assigned", case_id=case_id,
                  technician=technician_id, previous=case.assignee_id)
            case.assignee_id = technician_id
        return person.name


@task(name="tell-owner", cache_policy=NO_CACHE, task_run_name="tell-owner {event}")
def tell_owner(case_id: int, event: str, key: str, **extra: Any) -> None:
    with unit_of_work() as session:
        case = _case(session, case_id)
        notices.tell(session, case=case, event=event, to=[notices.owner_recipient(case)],
                     key=f"case:{case_id}:{key}", now=now(), **extra)


@task(name="close-case", cache_policy=NO_CACHE)
def close_case(case_id: int, outcome: str) -> None:
    with unit_of_work() as session:
        repair.close(session, _case(session, case_id), outcome, now())
