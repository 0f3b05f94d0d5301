"""Emergency side effects. Idempotent under replay: each message has its own dedupe key."""

from __future__ import annotations

from core.clock import now
from models import emergency
from models.db import unit_of_work
from tasks.cases import load
from tasks.retries import db_task


@db_task(name="report-skipped-levels")
def report_skipped_levels(case_id: int) -> int:
    """After the incident: whoever a level above acted for is told (越级, 事后汇报)."""
    with unit_of_work() as session:
        return emergency.report_skipped_levels(session, load(session, case_id), now())
