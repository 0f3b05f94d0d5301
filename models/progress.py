"""A repair's progress while work is under way (PROCEDURES.md §10, seed 004: 每小时同步进度至
业主端): staff note progress as it happens; the owner hears it at most once an hour, every
note since the last message merged into one.

A note is an audit event ("progress") on the case's timeline; a message sent is another
("progress_sent"). Work is under way while the case's `complete` step waits.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict, PropflowError
from core.policy import get_policy
from core.vocabulary import StepStatus
from models import limits, notices
from models.authority import staff_of
from models.cases import Case, Step
from models.outbox import AuditEvent, audit


def _under_way(session: Session, case_ids: list[int] | None = None) -> list[int]:
    query = (select(Step.case_id).join(Case, Step.case_id == Case.id)
             .where(Case.procedure == "repair", Step.kind == "complete",
                    Step.status == StepStatus.WAITING))
    if case_ids is not None:
        query = query.where(Step.case_id.in_(case_ids))
    return sorted(set(session.scalars(query)))


def post(session: Session, case: Case, staff_id: int | str, note: str,
         now: datetime) -> dict[str, Any]:
    """Record a progress note on a repair under way; the owner hears it with the hour's."""
    if case.procedure != "repair":
        raise PropflowError(f"case：{case.number} 不是报修工单；expected a repair number BX-...",
                            field="case")
    text = limits.check_length((note or "").strip(), "note", limits.NOTE)
    if not text:
        raise PropflowError("note：请填写进展；expected what has been done or what comes next, "
                            "e.g. 已更换阀门，正在试水", field="note")
    person = staff_of(session, case.community_id, staff_id, field="as")
    if not _under_way(session, [case.id]):
        raise Conflict(f"case：{case.number} 目前没有进行中的维修（完工登记前才可通报进展）；"
                       "expected a repair whose complete step is waiting", field="case")
    audit(session, at=now, actor=f"staff:{person.id}", action="progress", case_id=case.id,
          note=text, by=person.name)
    return {"case": case.number, "note": text, "at": notices.local(now)}


def send_due(session: Session, now: datetime) -> int:
    """Tell each owner whose repair has news the notes since their last message, once the
    policy's interval (procedures.repair.progress_every) has passed since it; returns how
    many owners were told. Nothing new, nothing sent."""
    every = get_policy().procedures["repair"].progress_every
    if every is None:
        return 0
    # Only repairs under way that have a note at all: read through the waiting steps.
    cases = sorted({case_id for case_id in session.scalars(
        select(AuditEvent.case_id).join(Step, Step.case_id == AuditEvent.case_id)
        .where(AuditEvent.action == "progress", Step.kind == "complete",
               Step.status == StepStatus.WAITING)) if case_id is not None})
    if not cases:
        return 0
    notes: dict[int, list[AuditEvent]] = defaultdict(list)
    last_sent: dict[int, datetime] = {}
    for event in session.scalars(select(AuditEvent).where(
            AuditEvent.case_id.in_(cases), AuditEvent.action.in_(("progress", "progress_sent")))
            .order_by(AuditEvent.at, AuditEvent.id)):
        assert event.case_id is not None
        if event.action == "progress_sent":
            last_sent[event.case_id] = event.at
            notes[event.case_id] = []  # told already
        else:
            notes[event.case_id].append(event)
    told = 0
    for case_id, pending in notes.items():
        last = last_sent.get(case_id)
        if not pending or (last is not None and now - last < every):
            continue
        case = session.get(Case, case_id)
        assert case is not None
        updates = [{"at": notices.local(e.at), "note": e.detail.get("note", "")} for e in pending]
        if case.reporter_phone:
            notices.tell(session, case=case, event="progress", to=[notices.owner_recipient(case)],
                         key=f"case:{case_id}:progress:{pending[-1].id}", now=now,
                         updates=updates)
        audit(session, at=now, actor="system", action="progress_sent", case_id=case_id,
              notes=len(updates))
        told += 1
    return told
