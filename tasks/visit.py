"""VIP visit side effects: the countdown planned once. Idempotent under replay."""

from __future__ import annotations

from datetime import datetime

from core.clock import now
from core.policy import get_policy
from models import visit
from models.db import unit_of_work
from models.outbox import audit
from tasks.cases import load
from tasks.retries import db_task


@db_task(name="plan-countdown")
def plan_countdown(case_id: int) -> dict[str, str]:
    """Each preparation step of the visit's class and when it falls due (ISO), worked out
    once and kept on the case: a replay or a restarted run opens the same steps."""
    with unit_of_work() as session:
        case = load(session, case_id)
        if "countdown" not in case.data:
            policy = get_policy()
            plan = visit.countdown(policy.procedures["visit"], policy,
                                   case.data["visit_class"],
                                   datetime.fromisoformat(case.data["arrival"]),
                                   case.data.get("cars") or [], now())
            case.data = {**case.data, "countdown": {k: v.isoformat() for k, v in plan.items()}}
            audit(session, at=now(), actor="system", action="countdown_planned",
                  case_id=case_id, steps=list(plan))
        planned: dict[str, str] = case.data["countdown"]
        return planned


@db_task(name="plan-restore")
def plan_restore(case_id: int) -> str:
    """When the site must be restored by: its window after the arrival, fixed once."""
    with unit_of_work() as session:
        case = load(session, case_id)
        if "restore_due" not in case.data:
            due = visit.restore_due(get_policy(), datetime.fromisoformat(case.data["arrival"]),
                                    now())
            case.data = {**case.data, "restore_due": due.isoformat()}
        restore: str = case.data["restore_due"]
        return restore
