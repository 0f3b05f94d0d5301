"""What users ask for, whatever the door (CLI, HTTP): each command one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from models import complaint, directory, emergency, lifecycle, limits, notices, repair, steps
from models.cases import Case, Step
from models.db import unit_of_work
from models.org import Unit
from models.outbox import AuditEvent, Notification
from propflow import runs
from propflow.clock import now


def _open(opener: Any, start_run: bool, **fields: Any) -> dict[str, Any]:
    with unit_of_work() as session:
        case = opener(session, now=now(), **fields)
        if start_run:
            # Created in the same transaction: a case never exists without its run unless
            # Prefect was away, and then the SLA clock starts it later.
            case.flow_run_id = runs.start(case.procedure, case.id, case.number)
        summary = case_summary(session, case)
        if start_run and not case.flow_run_id:
            summary["note"] = "Prefect 暂不可达：工单已保存，propflow serve 将在其恢复后启动流程"
        return summary


def open_repair(*, start_run: bool = True, **fields: Any) -> dict[str, Any]:
    return _open(repair.open_repair, start_run, **fields)


def open_complaint(*, start_run: bool = True, **fields: Any) -> dict[str, Any]:
    return _open(complaint.open_complaint, start_run, **fields)


def report_emergency(*, start_run: bool = True, **fields: Any) -> dict[str, Any]:
    return _open(emergency.report_emergency, start_run, **fields)


def decide(step_id: int | str, staff_id: int | str, values: dict[str, Any],
           comment: str = "", channel: str = "cli") -> dict[str, Any]:
    limits.check_length(comment or "", "comment", limits.NOTE)
    with unit_of_work() as session:
        step = directory.step(session, step_id)
        person = directory.staff(session, staff_id, field="as")
        decision = steps.decide(session, step=step, person=person, values=values, now=now(),
                                comment=comment, channel=channel)
        run_id = step.case.flow_run_id
        result = {"step": step.id, "case": step.case.number, "kind": step.kind,
                  "decided_by": person.id, "values": decision.values}
    # Stored first, then the run is woken; until the run has read the decision the SLA clock
    # keeps waking it, so a failed wake here loses nothing.
    result["delivered"] = runs.wake(run_id)
    return result


def step_row(step: Step) -> dict[str, Any]:
    return {
        "id": step.id, "case": step.case.number, "step": step.kind, "key": step.key,
        "role": step.role, "assignee": step.assignee_id, "due_at": notices.local(step.due_at),
        "level": step.level, "status": step.status, "breached": step.breached,
    }


def list_steps(case: str | None = None, role: str | None = None,
               status: str | None = "waiting") -> list[dict[str, Any]]:
    if role:  # a misspelt role would list nothing and look like an empty queue
        directory.role(role)
    with unit_of_work() as session:
        query = select(Step).join(Case).order_by(Step.due_at)
        if case:
            query = query.where(Case.id == directory.case(session, case).id)
        if role:
            query = query.where(Step.role == role)
        if status:
            query = query.where(Step.status == status)
        return [step_row(s) for s in session.scalars(query)]


def case_summary(session: Any, case: Case) -> dict[str, Any]:
    unit = session.get(Unit, case.unit_id) if case.unit_id else None
    return {
        "number": case.number, "status": case.status, "procedure": case.procedure,
        "unit": unit.code if unit else None, "category": case.category,
        "priority": case.priority, "paid": case.paid, "assignee": case.assignee_id,
        "reporter": case.reporter_name, "outcome": case.outcome,
        "created_at": notices.local(case.created_at), "closed_at": notices.local(case.closed_at),
        "flow_run_id": case.flow_run_id,
    }


def list_cases() -> list[dict[str, Any]]:
    with unit_of_work() as session:
        return [case_summary(session, c) for c in session.scalars(select(Case).order_by(Case.id))]


def show_case(number: str) -> dict[str, Any]:
    with unit_of_work() as session:
        case = directory.case(session, number)
        out = case_summary(session, case)
        out["description"] = case.description
        out["links"] = lifecycle.links_of(session, case)
        out["first_responder"] = case.data.get("first_responder")
        out["steps"] = []
        for step in case.steps:
            row = step_row(step)
            if step.decision:
                d = step.decision
                row["decision"] = {"by": d.decided_by, "values": d.values, "comment": d.comment,
                                   "channel": d.channel, "override": d.override,
                                   "at": notices.local(d.created_at)}
            row["escalations"] = [
                {"level": e.level, "to_role": e.to_role, "lapsed_at": notices.local(e.lapsed_at),
                 "handled_at": notices.local(e.handled_at)} for e in step.escalations]
            out["steps"].append(row)
        out["notifications"] = notification_rows(session, case.id)
        out["timeline"] = [
            {"at": notices.local(a.at), "actor": a.actor, "action": a.action, "detail": a.detail}
            for a in session.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id)
                                     .order_by(AuditEvent.id))]
        return out


def notification_rows(session: Any, case_id: int | None) -> list[dict[str, Any]]:
    query = select(Notification).order_by(Notification.id)
    if case_id is not None:
        query = query.where(Notification.case_id == case_id)
    return [{"id": n.id, "event": n.event, "to": n.recipient_name, "recipient": n.recipient,
             "channel": n.channel, "status": n.status, "subject": n.subject,
             "created_at": notices.local(n.created_at), "attempts": n.attempts,
             "error": n.last_error} for n in session.scalars(query)]


def list_notifications(case: str | None = None) -> list[dict[str, Any]]:
    with unit_of_work() as session:
        case_id = directory.case(session, case).id if case else None
        return notification_rows(session, case_id)
