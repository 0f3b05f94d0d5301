"""Reception-day side effects: the notice a week before, the handler chosen. Idempotent."""

from __future__ import annotations

from datetime import date

from core.clock import now
from models import reception
from models.db import unit_of_work
from models.outbox import audit
from tasks.cases import load
from tasks.retries import db_task


@db_task(name="announce-reception-days")
def announce_reception_days() -> list[dict[str, str]]:
    """Tell residents and managers of each community about a reception day a week ahead."""
    with unit_of_work() as session:
        return reception.announce_due(session, now())


@db_task(name="set-handler", task_run_name="set-handler {department}")
def set_handler(case_id: int, department: str, deadline: str) -> dict[str, str]:
    """The receiving manager's choice, kept on the case: the role that answers and when its
    deadline falls (the end of office hours that day)."""
    with unit_of_work() as session:
        case = load(session, case_id)
        role = reception.department_role(department)
        due = reception.end_of(date.fromisoformat(deadline[:10]))
        if (case.data.get("handler"), case.data.get("deadline")) != (department, deadline):
            case.data = {**case.data, "handler": department, "handler_role": role,
                         "deadline": deadline}
            audit(session, at=now(), actor="flow", action="handler_set", case_id=case_id,
                  department=department, deadline=deadline)
        return {"role": role, "due": due.isoformat()}
