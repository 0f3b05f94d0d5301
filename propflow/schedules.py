"""The next run of each scheduled deployment (core/procedures.py `schedule`), created by
`propflow serve`.

A deployment's schedule is in prefect.yaml and on the deployment, but with the pinned
Prefect 3.8.8 and SQLAlchemy 2.1 the Prefect server's own scheduler cannot insert the runs it
asks for (its bulk INSERT fails: "Can't evaluate bulk DML statement"), so the schedule alone
starts nothing. Every replica of `propflow serve` therefore creates the next run of each
scheduled deployment itself, one run through the API, under an idempotency key naming its
fire time: of several replicas, and of repeated passes, one run results. The executor (or a
work pool's worker) takes it when it is due, like any run the server would have scheduled.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from core.procedures import PROCEDURES, Procedure

log = logging.getLogger("propflow.schedules")


def next_fire(spec: Procedure, after: datetime) -> datetime:
    """The first time after `after` that the procedure's cron fires, as aware UTC."""
    from prefect.server.schemas.schedules import CronSchedule

    schedule = CronSchedule(cron=spec.schedule, timezone=spec.schedule_timezone)
    dates = asyncio.run(schedule.get_dates(n=1, start=after))
    return dates[0].astimezone(UTC)


def key(spec: Procedure, at: datetime) -> str:
    return f"propflow-schedule:{spec.deployment_path}:{at.isoformat()}"


def ensure_next_runs(now: datetime | None = None) -> list[str]:
    """Create the next scheduled run of every scheduled deployment that exists on the
    Prefect server; returns their ids (the same run again when it exists already)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    after = now or datetime.now(UTC)  # Prefect's schedules are wall-clock time
    made: list[str] = []
    with get_client(sync_client=True) as client:
        for spec in PROCEDURES.values():
            if not spec.schedule:
                continue
            try:
                deployment: Any = client.read_deployment_by_name(spec.deployment_path)
            except ObjectNotFound:
                log.debug("%s: no deployment yet, no scheduled run", spec.deployment_path)
                continue
            at = next_fire(spec, after)
            run = client.create_flow_run_from_deployment(
                deployment.id, state=Scheduled(scheduled_time=at), idempotency_key=key(spec, at))
            made.append(str(run.id))
    return made
