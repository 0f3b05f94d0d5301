"""What every case goes through whatever its procedure: links to other cases, closing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import labels
from core.policy import get_policy
from core.vocabulary import CaseStatus, StepStatus
from models import notices
from models.cases import Case, CaseLink, Decision, Step, mark_decided
from models.outbox import audit


def link(session: Session, source: Case, target: Case, relation: str, now: datetime) -> None:
    """Link two cases; each timeline records it."""
    exists = session.scalar(select(CaseLink.id).where(
        CaseLink.from_case_id == source.id, CaseLink.to_case_id == target.id))
    if exists:
        return
    session.add(CaseLink(from_case_id=source.id, to_case_id=target.id, relation=relation,
                         created_at=now))
    audit(session, at=now, actor="system", action="linked", case_id=source.id,
          relation=relation, to=target.number)
    audit(session, at=now, actor="system", action="linked", case_id=target.id,
          relation=relation, to=source.number)


def links_of(session: Session, case: Case) -> list[dict[str, str]]:
    rows = session.execute(select(CaseLink, Case).join(
        Case, Case.id == CaseLink.to_case_id).where(CaseLink.from_case_id == case.id)).all()
    back = session.execute(select(CaseLink, Case).join(
        Case, Case.id == CaseLink.from_case_id).where(CaseLink.to_case_id == case.id)).all()
    return ([{"relation": lk.relation, "case": other.number} for lk, other in rows]
            + [{"relation": f"{lk.relation} (from)", "case": other.number} for lk, other in back])


# A step's context key: it waits until every case its case links to with this relation is
# closed (a move-in's defect repairs), and is settled by the close of the last of them.
WAITS_FOR = "waits_for"


def release_waiting(session: Session, closed: Case, now: datetime) -> None:
    """Settle the steps that waited for `closed` and the cases linked beside it. The decision
    is the system's (no staff member); the SLA clock wakes the run until it has read it."""
    sources = session.execute(select(CaseLink.from_case_id, CaseLink.relation).where(
        CaseLink.to_case_id == closed.id)).all()
    for source_id, relation in sources:
        waiting = session.scalars(select(Step).where(
            Step.case_id == source_id, Step.status == StepStatus.WAITING)).all()
        waiting = [s for s in waiting if (s.context or {}).get(WAITS_FOR) == relation]
        if not waiting:
            continue
        still_open = session.scalar(select(Case.number).join(
            CaseLink, CaseLink.to_case_id == Case.id).where(
            CaseLink.from_case_id == source_id, CaseLink.relation == relation,
            Case.status != CaseStatus.CLOSED).limit(1))
        if still_open is not None:
            continue
        for step in waiting:
            _settle_by_system(session, step, closed, now)


def _settle_by_system(session: Session, step: Step, last: Case, now: datetime) -> None:
    if not mark_decided(session, step, now):
        return
    values = {"note": f"关联工单已全部关闭（最后一张 {last.number}）"}
    session.add(Decision(step_id=step.id, decided_by=None, channel="system", values=values,
                         comment="", override=False, created_at=now))
    audit(session, at=now, actor="system", action="decided", case_id=step.case_id,
          step=step.key, values=values, comment="", channel="system", override=False)


def close(session: Session, case: Case, outcome: str, now: datetime) -> None:
    if case.status == CaseStatus.CLOSED:
        return
    case.status, case.outcome, case.closed_at = CaseStatus.CLOSED, outcome, now
    audit(session, at=now, actor="flow", action="case_closed", case_id=case.id, outcome=outcome)
    release_waiting(session, case, now)
    if case.procedure == "emergency":
        return  # residents were told by broadcast when it was resolved
    if not case.reporter_phone:
        return  # nobody outside reported it (a visit): nobody to tell it is closed
    notices.tell(session, case=case, event="closed", to=[notices.owner_recipient(case)],
                 key=f"case:{case.id}:closed", now=now,
                 outcome_label=labels.label(labels.OUTCOMES, outcome, get_policy().lang))
