"""Storm checks ordered now (models/storm.py): the rounds made in one transaction, their
runs started after it is committed (Prefect away: the SLA clock starts them later)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.clock import now
from models import storm
from models.cases import Case
from models.db import unit_of_work
from models.notices import local
from tasks import runs
from tasks.inspection import OPENER


def order_storm_checks(community: str, when: str, staff_id: int | str) -> dict[str, Any]:
    """`propflow inspections storm` and the web door's button: the vacant-unit rounds of the
    community, once per kind and hour; who ordered it is audited."""
    with unit_of_work() as session:
        rounds, made = storm.order(session, community=community, when=when,
                                   staff_id=staff_id, now=now())
        for case_id in made:
            case = session.get(Case, case_id)
            assert case is not None
            runs.claim_new(case, OPENER)  # so the SLA clock does not start it as well
        ends: dict[int, dict[str, Any]] = dict(session.execute(select(Case.id, Case.data).where(
            Case.id.in_([r.case_id for r in rounds]))).tuples().all())
        shown = [{"number": r.number, "area": r.area, "made": r.made, "ends_at": at,
                  "due": local(datetime.fromisoformat(at)) if at else ""}
                 for r in rounds for at in [(ends.get(r.case_id) or {}).get("ends_at")]]
    started = [runs.start_pending(case_id, OPENER) for case_id in made]
    return {"community": community, "when": when, "label": storm.WHEN[when],
            "made": len(made), "started": sum(1 for s in started if s), "rounds": shown}
