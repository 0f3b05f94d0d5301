"""Tasks around human steps. Each is idempotent: the flow body replays after a suspend."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger
from sqlalchemy import select

from core.clock import now
from core.errors import PropflowError
from core.vocabulary import StepStatus
from models import directory, steps
from models.cases import Case, Escalation
from models.db import unit_of_work
from models.forms import form_key
from models.outbox import audit
from tasks.retries import TRANSIENT, db_task


@db_task(name="open-step", task_run_name="open-step {key}")
def open_step(case_id: int, key: str, kind: str, role: str, assignee_id: int | None,
              context: dict[str, Any] | None = None, due_at: datetime | None = None) -> int:
    """`due_at`: a fixed due time instead of the policy's window from now."""
    with unit_of_work() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return steps.open_step(session, case=case, key=key, kind=kind, role=role,
                               assignee_id=assignee_id, now=now(), context=context,
                               due_at=due_at).id


# Not replayed from the journal on its own: what it reads may have changed since (a
# decision since the run suspended). flows.human reuses a recorded read only once final.
@db_task(name="read-steps", from_journal=False)
def read_steps(step_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Where the steps stand in the record, which the flow trusts over any resume input.

    A decision read here has reached its run: the SLA clock stops redelivering it.
    """
    out: dict[int, dict[str, Any]] = {}
    with unit_of_work() as session:
        for step_id in step_ids:
            step = directory.step(session, step_id)
            decision = step.decision
            if decision and decision.delivered_at is None:
                decision.delivered_at = now()
            pending = session.execute(select(Escalation.id, Escalation.level).where(
                Escalation.step_id == step_id, Escalation.handled_at.is_(None)
            ).order_by(Escalation.level))
            out[step_id] = {
                "key": step.key,
                "form": form_key(step.case.procedure, step.kind),
                "status": step.status,
                "values": decision.values if decision else {},
                "decided_by": decision.decided_by if decision else None,
                # When it settled (decided, lapsed or cancelled) and, within one instant,
                # the decision's number: a replay takes settled steps in this order.
                "settled_at": step.decided_at.timestamp() if step.decided_at else None,
                "decision_id": decision.id if decision else None,
                "pending_escalations": [list(row) for row in pending],
                # Cancelled by a send-back or a withdrawal (models.operations): the run
                # goes back through the procedure from the record (flows.human.Rewind).
                "rewound": step.rewound,
            }
    return out


@db_task(name="cancel-steps")
def cancel_steps(step_ids: list[int], reason: str) -> None:
    """Steps no longer needed (an incident resolved while an update was due)."""
    with unit_of_work() as session:
        for step_id in step_ids:
            steps.cancel(session, directory.step(session, step_id), reason, now())


@db_task(name="escalate", task_run_name="escalate level {level}")
def escalate(escalation_id: int, level: int) -> list[str]:
    """Tell the next level of the chain that a window lapsed, and record it."""
    with unit_of_work() as session:
        escalation = session.get(Escalation, escalation_id)
        assert escalation is not None
        told = steps.record_escalation(session, escalation, now())
    get_run_logger().warning("超时升级至第 %s 级（%s）：已通知 %s", level,
                             escalation.to_role, "、".join(told) or "（该角色无人）")
    return told


UI_ONLY = ("signal", "as_staff", "comment", "metadata", "step_id")


@db_task(name="record-ui-decision")
def record_ui_decision(step_id: int, answer: dict[str, Any]) -> bool:
    """A decision typed into the Prefect UI form: stored as an override with its channel."""
    logger = get_run_logger()
    values = {k: v for k, v in answer.items() if k not in UI_ONLY and v is not None}
    try:
        with unit_of_work() as session:
            step = directory.step(session, step_id)
            if step.status != StepStatus.WAITING:
                return False
            if answer.get("as_staff") is None:
                raise PropflowError("as_staff：请填写您的员工编号；expected a staff id",
                                    field="as_staff")
            person = directory.staff(session, answer["as_staff"], field="as_staff")
            steps.decide(session, step=step, person=person, values=values, now=now(),
                         comment=answer.get("comment") or "", channel="prefect_ui",
                         override=True)
        return True
    except PropflowError as exc:
        if exc.code in TRANSIENT:  # a lock, not a refusal: retried (tasks.retries)
            raise
        with unit_of_work() as session:
            step = directory.step(session, step_id)
            audit(session, at=now(), actor="prefect_ui", action="ui_decision_refused",
                  case_id=step.case_id, step=step.key, error=exc.message)
        logger.error("Prefect 界面提交的决定未被接受：%s", exc.message)
        return False
