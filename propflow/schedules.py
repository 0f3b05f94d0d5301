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

from core.procedures import DUTIES, PROCEDURES, Procedure, Schedule

log = logging.getLogger("propflow.schedules")


def extra(spec: Procedure) -> list[Schedule]:
    """The procedure's further scheduled deployments, from the policy in effect (an
    inspection plan each: core/procedures.py `schedules`)."""
    if not spec.schedules:
        return []
    from importlib import import_module

    from core.policy import get_policy

    module, _, function = spec.schedules.partition(":")
    found: list[Schedule] = getattr(import_module(module), function)(get_policy())
    return found


def scheduled() -> list[tuple[str, str, str]]:
    """Every scheduled deployment: (<flow>/<deployment>, cron, time zone)."""
    out = []
    for spec in PROCEDURES.values():
        if spec.schedule:
            out.append((spec.deployment_path, spec.schedule, spec.schedule_timezone))
        out += [(f"{spec.flow_name}/{s.name}", s.cron, s.timezone) for s in extra(spec)]
    out += [(d.deployment_path, d.schedule, d.schedule_timezone) for d in DUTIES.values()]
    return out


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time after `after` that the cron fires, as aware UTC."""
    from prefect.server.schemas.schedules import CronSchedule

    schedule = CronSchedule(cron=cron, timezone=timezone)
    dates = asyncio.run(schedule.get_dates(n=1, start=after))
    return dates[0].astimezone(UTC)


def key(path: str, at: datetime) -> str:
    return f"propflow-schedule:{path}:{at.isoformat()}"


def ensure_next_runs(now: datetime | None = None) -> list[str]:
    """Create the next scheduled run of every scheduled deployment that exists on the
    Prefect server; returns their ids (the same run again when it exists already)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    after = now or datetime.now(UTC)  # Prefect's schedules are wall-clock time
    made: list[str] = []
    with get_client(sync_client=True) as client:
        for path, cron, timezone in scheduled():
            try:
                deployment: Any = client.read_deployment_by_name(path)
            except ObjectNotFound:
                log.debug("%s: no deployment yet, no scheduled run", path)
                continue
            at = next_fire(cron, timezone, after)
            # The deployment's own parameters (an inspection plan's key) go with the run.
            run = client.create_flow_run_from_deployment(
                deployment.id, state=Scheduled(scheduled_time=at), idempotency_key=key(path, at),
                parameters=dict(deployment.parameters or {}))
            made.append(str(run.id))
    return made
