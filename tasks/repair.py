"""Repair side effects: dispatch and assignment. Idempotent under replay."""

from __future__ import annotations

import os
import socket

from core.clock import now
from models import repair
from models.db import unit_of_work
from models.org import Staff
from models.outbox import audit
from tasks import runs
from tasks.cases import load
from tasks.retries import db_task


@db_task(name="auto-dispatch")
def auto_dispatch(case_id: int) -> int | None:
    """Choose once and remember: a replay must not pick someone else."""
    with unit_of_work() as session:
        case = load(session, case_id)
        if "auto_dispatch" not in case.data:
            chosen = repair.choose_technician(session, case)
            case.data = {**case.data, "auto_dispatch": chosen}
            audit(session, at=now(), actor="system", action="auto_dispatch", case_id=case_id,
                  technician=chosen)
        technician: int | None = case.data["auto_dispatch"]
        return technician


@db_task(name="assign")
def assign(case_id: int, technician_id: int, attempt: int = 1) -> str:
    """Make the technician the case's assignee; returns their name for the owner's message.

    A replay passes every earlier attempt again: an attempt already recorded changes nothing,
    or the assignee would flip back to the first technician and forth at every replay.
    """
    with unit_of_work() as session:
        case = load(session, case_id)
        person = session.get(Staff, technician_id)
        if person is None:
            # Every door checks the staff a decision names before the run sees them
            # (models.authority): this is our fault, and run supervision takes it from here.
            raise LookupError(f"assign: staff {technician_id} is not on record")
        if attempt <= case.data.get("assigned_attempt", 0):
            return person.name
        case.data = {**case.data, "assigned_attempt": attempt}
        if case.assignee_id != technician_id:
            audit(session, at=now(), actor="flow", action="assigned", case_id=case_id,
                  technician=technician_id, previous=case.assignee_id)
            if not person.active:
                # They left after the decision named them. Failing would leave the case stuck;
                # the accept step's stand-ins and the chain above can reassign it.
                audit(session, at=now(), actor="flow", action="assignee_unavailable",
                      case_id=case_id, technician=technician_id)
            case.assignee_id = technician_id
        return person.name




OPENER = f"open-complaint@{socket.gethostname()}:{os.getpid()}"


@db_task(name="open-complaint")
def complain_about(case_id: int, rating: int, comment: str, received_by: int | None) -> str:
    """A callback rated low (models.complaint.opens_complaint) opens a complaint on its own,
    linked to the work order."""
    from models.intake import open_case
    from models.org import Unit

    with unit_of_work() as session:
        case = load(session, case_id)
        if "complaint" not in case.data:
            unit = session.get(Unit, case.unit_id)
            opened = open_case(session, "complaint", dict(
                unit=unit.code if unit else "", complainant=case.reporter_name,
                phone=case.reporter_phone, category="repair", channel="online",
                description=f"报修 {case.number} 回访评分 {rating}：{comment or '（无留言）'}",
                received_by=received_by, repair=case.number), now())
            case.data = {**case.data, "complaint": opened.number, "complaint_id": opened.id}
            runs.claim_new(opened, OPENER)  # so the SLA clock does not start it as well
        number: str = case.data["complaint"]
        complaint_id: int = case.data["complaint_id"]
    # Outside the transaction: if Prefect is away the SLA clock starts it later. A replay
    # or a retry finds the run started (or claimed by another) and starts nothing.
    runs.start_pending(complaint_id, OPENER)
    return number
