"""What every case goes through whatever its procedure: links to other cases, closing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import labels
from core.policy import get_policy
from core.vocabulary import CaseStatus
from models import notices
from models.cases import Case, CaseLink
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


def close(session: Session, case: Case, outcome: str, now: datetime) -> None:
    if case.status == CaseStatus.CLOSED:
        return
    case.status, case.outcome, case.closed_at = CaseStatus.CLOSED, outcome, now
    audit(session, at=now, actor="flow", action="case_closed", case_id=case.id, outcome=outcome)
    if case.procedure == "emergency":
        return  # residents were told by broadcast when it was resolved
    notices.tell(session, case=case, event="closed", to=[notices.owner_recipient(case)],
                 key=f"case:{case.id}:closed", now=now,
                 outcome_label=labels.label(labels.OUTCOMES, outcome, get_policy().lang))
