"""The building report's side effects (models/building_report.py): the month's cases opened
by the schedule, each compilation written, an approval recorded. Idempotent under replay."""

from __future__ import annotations

import os
import socket
from typing import Any

from core.clock import now
from core.policy import get_policy
from models import building_report
from models.db import unit_of_work
from models.intake import open_case
from models.kpi import Month
from models.outbox import audit
from tasks import runs
from tasks.cases import load
from tasks.retries import db_task

OPENER = f"building-report@{socket.gethostname()}:{os.getpid()}"


@db_task(name="open-building-reports")
def open_building_reports() -> list[str]:
    """The schedule's run (the 28th): this month's report case of every community that has
    none, each run started once the case is committed."""
    month = Month.of(now(), get_policy().timezone)
    made: list[tuple[int, str]] = []
    with unit_of_work(write=False) as session:
        due = building_report.due_communities(session, month)
    for code in due:
        with unit_of_work() as session:
            case = open_case(session, building_report.PROCEDURE,
                             {"community": code, "month": str(month)}, now())
            runs.claim_new(case, OPENER)
            made.append((case.id, case.number))
    for case_id, _ in made:
        runs.start_pending(case_id, OPENER)
    return [number for _, number in made]


@db_task(name="compile-building-report", task_run_name="compile-building-report v{version}")
def compile_report(case_id: int, version: int) -> dict[str, Any]:
    """The month's report from the rounds as they stand, written as this version's page."""
    with unit_of_work() as session:
        case = load(session, case_id)
        found = building_report.compile_month(session, case.community_id,
                                              Month.parse(case.data["month"]), now())
        path = building_report.write(found, version)
        case.data = {**case.data, "report": str(path), "version": version}
        audit(session, at=now(), actor="flow", action="building_report_compiled",
              case_id=case_id, version=version, report=str(path), summary=found.summary())
        return {"report": str(path), "summary": found.summary(), "month": found.month,
                "community": found.community_name}


@db_task(name="record-building-report-approval")
def record_approval(case_id: int, version: int, decided_by: int | None) -> None:
    with unit_of_work() as session:
        case = load(session, case_id)
        if (case.data.get("approved") or {}).get("version") == version:
            return
        case.data = {**case.data, "approved": {"version": version, "by": decided_by,
                                               "at": now().isoformat(),
                                               "report": case.data.get("report")}}
        audit(session, at=now(), actor=f"staff:{decided_by}" if decided_by else "flow",
              action="building_report_approved", case_id=case_id, version=version,
              report=case.data.get("report"))
