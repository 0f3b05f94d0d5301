"""Talking to Prefect: start a case's run, wake a waiting run. Failures are left for the
SLA clock to retry, so nothing is lost while Prefect is away."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from core.clock import now
from core.errors import PropflowError
from core.procedures import PROCEDURES
from core.settings import get_settings
from models.cases import Case
from models.db import rowcount, unit_of_work

log = logging.getLogger("propflow.runs")
# Whether this thread's last start found Prefect away (a refused connection, a timeout):
# a pass with many cases to start stops there instead of waiting out each one's retries.
_last = threading.local()

# Each procedure's deployment, "<flow>/<deployment>" (core/procedures.py).
DEPLOYMENTS = {p.name: p.deployment_path for p in PROCEDURES.values()}


# A Prefect server on SQLite answers 503 when creating a run from a deployment collides with
# another write (it reads the deployment, then inserts: SQLITE_BUSY_SNAPSHOT, rolled back,
# nothing created). Prefect's client sleeps 2 s (then 4, 8...) before trying again, even
# with retries off: a burst of openings spent three quarters of its time asleep there
# (README "Benchmarks"). A refusal is taken out of its hands here and tried again sooner,
# after 0.05-0.1 s, then twice as long each time: in a burst about every other try collides,
# and trying again sooner still (from 0.01 s) only made more of them collide (101-108 s
# for the burst against 91-99 s). After these tries, Prefect's own retries as before.
QUICK_TRIES = (0.05, 0.1, 0.2, 0.4, 0.8)


class _Refused(Exception):
    """Prefect answered 503: the write was refused, nothing was done."""


def _refuse_503(response: Any) -> None:
    if response.status_code == 503:
        raise _Refused(str(response.request.url))


def start(procedure: str, case_id: int, number: str) -> str | None:
    """Create the case's flow run from its deployment; the served runner picks it up."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.deployments import run_deployment
    from prefect.states import Scheduled

    parameters = {"case_id": case_id, "number": number}
    tags = [procedure, number]
    run: Any = None
    try:
        # From inside a run (a repair opening its complaint) run_deployment links the new
        # run to its caller's: that path stays Prefect's own.
        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            with get_client(sync_client=True, httpx_settings={
                    "event_hooks": {"response": [_refuse_503]}}) as client:
                deployment = None
                for pause in QUICK_TRIES:
                    try:
                        deployment = deployment or client.read_deployment_by_name(
                            DEPLOYMENTS[procedure])
                        run = client.create_flow_run_from_deployment(
                            deployment.id, parameters=parameters, state=Scheduled(),
                            name=number, tags=tags)
                        break
                    except _Refused:
                        time.sleep(pause * random.uniform(1, 2))
        if run is None:
            run = run_deployment(DEPLOYMENTS[procedure], parameters=parameters, timeout=0,
                                 tags=tags, flow_run_name=number)
    except Exception as exc:  # Prefect down or deployment not served yet: retried later
        import httpx  # here, not at the top: a read command would pay for it (test_cli_startup)

        log.warning("could not start the %s run for %s: %s", procedure, number, exc)
        _last.away = isinstance(exc, OSError | httpx.TransportError)
        return None
    _last.away = False
    # Called from sync code, Prefect's sync-or-async wrapper gives the run, not a coroutine.
    assert isinstance(run, FlowRun)
    return str(run.id)


def prefect_away() -> bool:
    """The last start tried on this thread could not reach Prefect at all."""
    return bool(getattr(_last, "away", False))


# A start claimed longer ago than this was abandoned by a process that died before it
# recorded the run: another may take it over. Far longer than a start takes.
CLAIM_LEASE = timedelta(minutes=5)


def claimable(by: str, at: datetime) -> ColumnElement[bool]:
    """Cases whose first run `by` may start now: none yet, and nobody else starting it."""
    return Case.flow_run_id.is_(None) & or_(
        Case.run_claimed_by.is_(None), Case.run_claimed_by == by,
        Case.run_claimed_at < at - CLAIM_LEASE)


def claim(session: Session, case_id: int, by: str) -> bool:
    """Take the start of a case's first run. One conditional UPDATE: of several replicas
    (or an opener and the SLA clock) exactly one wins, and nobody starts a second run."""
    at = now()
    done = rowcount(session.execute(
        update(Case).where(Case.id == case_id, claimable(by, at))
        .values(run_claimed_by=by, run_claimed_at=at)
        .execution_options(synchronize_session=False)))
    return done == 1


def claim_new(case: Case, by: str) -> None:
    """A case just created in this transaction is claimed by its creator, who starts its
    run once the case is committed."""
    case.run_claimed_by, case.run_claimed_at = by, now()


def start_claimed(case_id: int, procedure: str, number: str, by: str) -> str | None:
    """Start the run of a case claimed and committed before: Prefect is called outside any
    transaction; then the run is recorded, or the claim let go for the SLA clock to retry."""
    run_id = start(procedure, case_id, number)
    try:
        with unit_of_work() as session:
            if run_id:  # the run's own intake may have recorded it already
                session.execute(update(Case).where(Case.id == case_id,
                                                   Case.flow_run_id.is_(None))
                                .values(flow_run_id=run_id)
                                .execution_options(synchronize_session=False))
            else:
                session.execute(update(Case).where(Case.id == case_id, Case.run_claimed_by == by)
                                .values(run_claimed_by=None, run_claimed_at=None)
                                .execution_options(synchronize_session=False))
    except PropflowError as exc:
        # The case is saved and its run (if any) links itself at intake; an unrecorded
        # claim lapses with its lease. Reporting a failure here would have the case opened
        # twice.
        log.warning("%s: run %s not recorded: %s", number, run_id, exc.message)
    return run_id


def start_pending(case_id: int, by: str) -> str | None:
    """Claim, then start, the first run of a case that has none; None if another has the
    claim or Prefect is away."""
    with unit_of_work() as session:
        if not claim(session, case_id, by):
            return None
        procedure, number = session.execute(
            select(Case.procedure, Case.number).where(Case.id == case_id)).one()
    return start_claimed(case_id, procedure, number, by)


@dataclass(frozen=True)
class Wake:
    """What became of a wake-up: delivered, or queued and why. The decision or lapse is in
    the record either way; the SLA clock wakes the run again on its next pass."""

    delivered: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.delivered

    def __radd__(self, other: int) -> int:  # a pass counts its wakes with +=
        return other + int(self.delivered)


AGAIN = ("propflow serve 的时限时钟每 {n} 秒唤醒一次，流程将在约 {n} 秒内读取 "
         "(the SLA clock wakes it again within {n} s)")


def _queued(why: str, then: str) -> Wake:
    every = f"{get_settings().sla_interval_seconds:g}"
    return Wake(False, f"{why}；{then.format(n=every)}")


def wake(flow_run_id: str | None) -> Wake:
    """Resume a waiting run so it re-reads the record; if it is not waiting, say why."""
    if not flow_run_id:
        return _queued("流程尚未启动 (the case's run has not started: Prefect was unreachable)",
                       "propflow serve 启动流程后即读取 (it reads this once propflow serve "
                       "starts the run, checked every {n} s)")
    from prefect.exceptions import FlowPauseTimeout, NotPausedError
    from prefect.flow_runs import resume_flow_run

    for attempt in range(5):
        try:
            resume_flow_run(UUID(flow_run_id), run_input={"signal": "wake"})
            return Wake(True)
        except NotPausedError:
            return _queued(f"流程尚未进入等待 (the run is {_state(flow_run_id)}, not waiting yet)",
                           AGAIN)
        except FlowPauseTimeout:
            return _queued("流程已不能恢复 (the run can no longer be resumed)",
                           "运行监督将按记录重启流程 (run supervision restarts it from the "
                           "record)")
        except RuntimeError as exc:
            # A run saves its input form just after pausing: a wake in between is early.
            if "schema not found" in str(exc) and attempt < 4:
                time.sleep(0.1 * (attempt + 1))
                continue
            log.info("could not wake run %s: %s", flow_run_id, exc)
            if "schema not found" in str(exc):
                break
            return _queued(f"Prefect 拒绝唤醒 (Prefect refused the wake-up: {exc})", AGAIN)
        except Exception as exc:
            log.info("could not wake run %s: %r", flow_run_id, exc)
            return _queued(f"Prefect 暂不可达 (could not reach Prefect: {type(exc).__name__})",
                           "propflow serve 每 {n} 秒重试，Prefect 恢复后即送达 (the SLA clock "
                           "retries every {n} s until Prefect answers)")
    return _queued("流程正在挂起 (the run is still suspending)", AGAIN)


def _state(flow_run_id: str) -> str:
    """The run's state name, for the reason shown to whoever decided."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
        if state is None:
            return "starting"
        return state.name or state.type.value.title()  # Prefect's default name
    except Exception:  # the state only explains; not knowing it changes nothing
        return "running"
