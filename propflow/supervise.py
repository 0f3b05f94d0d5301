"""Run supervision, part of every SLA pass: a case whose run died, or stopped moving, is
restarted from its record; one that keeps failing is marked `stuck` and company_cs is told.

A restart is a new run from the case's deployment with the same parameters, and the case
points at it. Setting the dead run back to Scheduled would replay it under its old pause
keys: Prefect answers a replayed suspend with the input saved for that key, and a run killed
between proposing a suspend and saving its form has a key with no input at all, so the
replay fails again. A new run has no such history: its body replays from the record alone
(every task is idempotent, keyed in the database). The old run, if not already finished,
is set Cancelled first so that only one run works the case.

A run executing in a `propflow serve` (its threads, propflow/executor.py) carries a beat that
its service moves every few seconds. A kill -9 of the service leaves it Pending or Running
with a beat that no longer moves: nobody executes it, and nobody will mark it crashed. Such a
run is restarted as soon as its beat has stood still for six beats (30 s by default) — in
any replica, or in the service started again — so a decision made just before the crash is
carried out within about a minute, not after `stuck_after`.

One Prefect call reads every open case's run (in batches); none is made when no case is
open. Only runs started from a deployment are supervised: a run started by hand (tests, a
script) has nothing to restart it from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select, update

from core.clock import now
from core.policy import get_policy
from core.settings import get_settings
from core.vocabulary import CaseStatus, Role, StepStatus
from models import notices
from models.cases import Case, Decision, Escalation, Step
from models.db import rowcount, unit_of_work
from models.outbox import audit
from propflow.executor import BEAT
from tasks import runs

log = logging.getLogger("propflow.supervise")

DEAD = {"FAILED", "CRASHED", "CANCELLED"}
# A Suspended or Paused run is waiting for a person: it holds no process and sends no
# heartbeat, and that is healthy.
WAITING = {"PAUSED"}
WAIT_NAMES = {"Suspended", "Paused"}
# States a run is in while something executes it (or should): a beat that stands still in
# one of them means its executor is gone.
EXECUTING = {"PENDING", "RUNNING", "CANCELLING"}
MISSED_BEATS = 6
ID_BATCH = 1000  # run ids per request
PAGE = 200  # the server's largest page
# A run only looks stuck to the process that has seen the very same Prefect state on this
# many passes: a one-shot pass (`propflow clock advance`) or a replica that just started
# never restarts a run on a single look.
CONFIRM_PASSES = 3
# Nor does it unless this process has watched it not move for this many real seconds (or
# stuck_after, if shorter): a run starting up takes a few seconds whatever the training
# clock says, and a clock moved forward hours while it does must not make it look stuck.
LIVENESS_FLOOR = 20.0


@dataclass(frozen=True)
class Seen:
    """A run as Prefect reports it."""

    state_id: str
    name: str  # Running, Suspended, Crashed, AwaitingRetry, ...
    type: str  # RUNNING, PAUSED, CRASHED, ...
    served: bool  # started from a deployment
    # The heartbeat of a run executing in a propflow serve (its infrastructure_pid), or None
    # for a run executed elsewhere (Prefect's Runner, a work pool's worker), which has none.
    beat: str | None = None


@dataclass
class Result:
    checked: int = 0
    restarted: int = 0
    stuck: int = 0


# case id -> what this process saw last (state id, something unread), on how many passes in
# a row, since when (time.monotonic)
_watch: dict[int, tuple[tuple[str, bool], int, float]] = {}
# case id -> the beat of its executing run last seen here, on how many passes, since when
_beats: dict[int, tuple[str, int, float]] = {}


def check(worker: str = "supervise") -> Result:
    result = Result()
    at, mono = now(), time.monotonic()  # record time for windows, real time for liveness
    policy = get_policy().supervision
    cutoff = at - policy.stuck_after
    orphan_after = MISSED_BEATS * get_settings().run_heartbeat_seconds
    with unit_of_work() as session:
        cases = session.execute(select(
            Case.id, Case.number, Case.procedure, Case.status, Case.flow_run_id, Case.run_state,
            Case.run_restarts, Case.run_checked_at, Case.run_retry_at,
        ).where(Case.status != CaseStatus.CLOSED, Case.flow_run_id.is_not(None))).all()
        overdue = _unread_since(session, cutoff) if cases else set()
    for gone in set(_watch) - {c.id for c in cases}:
        del _watch[gone]
    for gone in set(_beats) - {c.id for c in cases}:
        del _beats[gone]
    if not cases:
        return result
    try:
        seen = _read_runs(cases)
    except Exception as exc:  # Prefect away: nothing to judge, the next pass looks again
        log.info("run supervision skipped, Prefect unreachable: %r", exc)
        return result

    changes: list[dict[str, Any]] = []
    recovered: list[int] = []
    act: list[tuple[Any, Seen, str]] = []
    for case in cases:
        run = seen.get(case.flow_run_id)
        if run is None or not run.served:
            continue
        result.checked += 1
        unread = case.id in overdue
        before = _watch.get(case.id)
        same = bool(before and before[0] == (run.state_id, unread))
        passes, watched_since = (before[1] + 1, before[2]) if before and same else (1, mono)
        _watch[case.id] = ((run.state_id, unread), passes, watched_since)
        since = case.run_checked_at or at
        if case.run_state != run.name or (before and before[0][0] != run.state_id):
            since = at  # a new state: its time starts now
            changes.append({"id": case.id, "run_state": run.name, "run_checked_at": at})
        if run.type in WAITING and not unread:
            if case.run_restarts or case.run_retry_at or case.status == CaseStatus.STUCK:
                recovered.append(case.id)
            continue
        if case.status == CaseStatus.STUCK or run.type == "COMPLETED":
            continue  # company_cs was told; a person takes it from here
        silent = _silent_for(case.id, run, mono)
        if run.type in DEAD:
            why = f"run {run.name}"
        elif silent is not None and silent >= orphan_after:
            why = (f"run {run.name}, but the propflow serve executing it is gone "
                   f"(no heartbeat for {silent:.0f} s)")
        elif passes < CONFIRM_PASSES or mono - watched_since < min(
                LIVENESS_FLOOR, policy.stuck_after.total_seconds()):
            continue
        elif unread:
            why = f"a decision or escalation unread for {policy.stuck_after}"
        elif at - since >= policy.stuck_after:
            why = f"run {run.name} for {policy.stuck_after}"
        else:
            continue
        if case.run_restarts < policy.max_restarts and case.run_retry_at \
                and at < case.run_retry_at:
            continue  # backing off since the last restart
        act.append((case, run, why))

    if changes or recovered:
        with unit_of_work() as session:
            if changes:
                session.execute(update(Case), changes)
            for case_id in recovered:
                _recover(session, case_id, at, worker)
    for case, run, why in act:
        if case.run_restarts >= policy.max_restarts:
            result.stuck += _mark_stuck(case, run, at, worker, why)
        elif _restart(case, run, at, worker, why):
            result.restarted += 1
    return result


def _silent_for(case_id: int, run: Seen, mono: float) -> float | None:
    """Real seconds this process has seen the beat of the case's executing run stand still,
    on CONFIRM_PASSES passes at least; None while it moves or if the run has none."""
    if run.beat is None or run.type not in EXECUTING:
        _beats.pop(case_id, None)
        return None
    before = _beats.get(case_id)
    if before and before[0] == run.beat:
        _beats[case_id] = (run.beat, before[1] + 1, before[2])
    else:
        _beats[case_id] = (run.beat, 1, mono)
    _, passes, since = _beats[case_id]
    return mono - since if passes >= CONFIRM_PASSES else None


def _unread_since(session: Any, cutoff: datetime) -> set[int]:
    """Cases with a decision its run has not read, or a lapse nobody was told of, since cutoff."""
    decisions = select(Step.case_id).join(Decision, Decision.step_id == Step.id).where(
        Decision.delivered_at.is_(None), Decision.created_at <= cutoff)
    # A lapse of a step that is no longer waiting has nobody left to tell.
    escalations = select(Step.case_id).join(Escalation, Escalation.step_id == Step.id).where(
        Escalation.handled_at.is_(None), Escalation.claimed_at <= cutoff,
        Step.status == StepStatus.WAITING)
    return set(session.scalars(decisions)) | set(session.scalars(escalations))


def _read_runs(cases: Sequence[Any]) -> dict[str, Seen]:
    """Where each case's run stands. Most runs of open cases wait for a person: Prefect is
    asked only for the runs that are not waiting, plus those whose last seen state was not
    a wait, so a pass over thousands of waiting cases returns next to nothing."""
    from prefect.client.schemas.filters import FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    ids = {c.flow_run_id: c for c in cases if _uuid(c.flow_run_id)}
    out = _query(list(ids), FlowRunFilterState(
        type=FlowRunFilterStateType(not_any_=[StateType.PAUSED])))
    unsure = [i for i, c in ids.items() if i not in out and c.run_state not in WAIT_NAMES]
    out |= _query(unsure, None)
    for run_id, case in ids.items():
        if run_id not in out and case.run_state in WAIT_NAMES:
            # Still waiting, as last seen: only runs started from a deployment get recorded.
            out[run_id] = Seen("waiting", case.run_state, "PAUSED", True)
    return out


def _query(run_ids: list[str], state: Any) -> dict[str, Seen]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    out: dict[str, Seen] = {}
    if not run_ids:
        return out
    with get_client(sync_client=True) as client:
        for i in range(0, len(run_ids), ID_BATCH):
            chunk = [UUID(r) for r in run_ids[i:i + ID_BATCH]]
            offset = 0
            while True:
                # Without an explicit sort, read_flow_runs answers 422 on Prefect 3.8.8.
                page = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk), state=state),
                    sort=FlowRunSort.ID_DESC, limit=PAGE, offset=offset)
                for run in page:
                    if run.state is not None:
                        # Prefect names a state after its type when given no name.
                        name = run.state.name or run.state.type.value.title()
                        pid = run.infrastructure_pid or ""
                        out[str(run.id)] = Seen(str(run.state.id), name,
                                                run.state.type.value,
                                                run.deployment_id is not None,
                                                pid if pid.startswith(BEAT) else None)
                if len(page) < PAGE:
                    break
                offset += PAGE
    return out


def _uuid(run_id: str) -> bool:
    try:
        UUID(run_id)
    except ValueError:
        return False
    return True


def _restart(case: Any, run: Seen, at: datetime, worker: str, why: str) -> bool:
    """Claim the restart (replicas never restart a run twice), then start the new run."""
    policy = get_policy().supervision
    attempt = case.run_restarts + 1
    with unit_of_work() as session:
        won = rowcount(session.execute(
            update(Case).where(Case.id == case.id, Case.flow_run_id == case.flow_run_id,
                               Case.run_restarts == case.run_restarts,
                               Case.status != CaseStatus.CLOSED)
            .values(run_restarts=attempt,
                    run_retry_at=at + policy.backoff * 2 ** case.run_restarts)
            .execution_options(synchronize_session=False)))
    if not won:
        return False
    if run.type not in DEAD:
        _cancel(case.flow_run_id)
    new_id = runs.start(case.procedure, case.id, case.number)
    with unit_of_work() as session:
        row = session.get(Case, case.id)
        assert row is not None
        if new_id is None:  # Prefect went away meanwhile: not an attempt, tried again later
            row.run_restarts = case.run_restarts
            return False
        row.flow_run_id, row.run_state, row.run_checked_at = new_id, "Scheduled", at
        audit(session, at=at, actor=worker, action="run_restarted", case_id=case.id,
              reason=why, state=run.name, run=case.flow_run_id, new_run=new_id,
              attempt=attempt)
    _watch.pop(case.id, None)
    _beats.pop(case.id, None)
    log.warning("%s: restarted its run (%s), attempt %d", case.number, why, attempt)
    return True


def _cancel(flow_run_id: str) -> None:
    """The old run stops counting: if a process still runs it, its next step is refused."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(flow_run_id), Cancelled(
                message="superseded: propflow restarted the case's run from its record"),
                force=True)
    except Exception as exc:  # the new run works from the record all the same
        log.info("could not cancel run %s: %r", flow_run_id, exc)


def _mark_stuck(case: Any, run: Seen, at: datetime, worker: str, why: str) -> int:
    with unit_of_work() as session:
        won = rowcount(session.execute(
            update(Case).where(Case.id == case.id,
                               Case.status.not_in((CaseStatus.CLOSED, CaseStatus.STUCK)))
            .values(status=CaseStatus.STUCK, run_state=run.name)
            .execution_options(synchronize_session=False)))
        if not won:
            return 0
        row = session.get(Case, case.id)
        assert row is not None
        audit(session, at=at, actor=worker, action="run_stuck", case_id=case.id, reason=why,
              state=run.name, run=case.flow_run_id, restarts=case.run_restarts)
        notices.tell(session, case=row, event="run_stuck",
                     to=notices.role_recipients(session, row, Role.COMPANY_CS),
                     key=f"case:{case.id}:run_stuck:{case.flow_run_id}", now=at,
                     run_state=run.name, restarts=case.run_restarts,
                     flow_run_id=case.flow_run_id)
    log.error("%s: run %s after %d restarts; marked stuck, company_cs told",
              case.number, run.name, case.run_restarts)
    return 1


def _recover(session: Any, case_id: int, at: datetime, worker: str) -> None:
    """The run waits for a person again: restarts count from zero for the next trouble."""
    row = session.get(Case, case_id)
    if row is None:
        return
    if row.status == CaseStatus.STUCK:
        row.status = CaseStatus.IN_PROGRESS
        audit(session, at=at, actor=worker, action="run_recovered", case_id=case_id,
              state=row.run_state)
    row.run_restarts, row.run_retry_at = 0, None
