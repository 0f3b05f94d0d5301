"""The SLA clock: one pass finds lapsed windows and due warnings, claims each atomically,
wakes the case's run to escalate, and redelivers anything Prefect missed."""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select, update

from core.clock import now
from core.vocabulary import CaseStatus
from models import progress, steps
from models.cases import Case, Decision, Escalation, Step
from models.db import unit_of_work
from propflow import supervise
from tasks import runs

log = logging.getLogger("propflow.sla")
WORKER = f"sla@{socket.gethostname()}:{os.getpid()}"


@dataclass
class Pass:
    lapsed: int = 0
    warned: int = 0
    woken: int = 0
    redelivered: int = 0
    started: int = 0
    restarted: int = 0
    stuck: int = 0
    progress: int = 0  # owners told their repair's progress (at most hourly)


# Steps per transaction: a long pass must not hold the database for long. Each batch is a
# handful of statements (models.steps), so 1000 steps hold it for a fraction of a second.
BATCH = 1000


def tick(*, start_pending: bool = True) -> Pass:
    result = Pass()
    at = now()
    with unit_of_work() as session:
        due, warn = steps.due_ids(session, at), steps.warn_ids(session, at)
    lapses: list[steps.Lapse] = []
    for chunk in _chunks(due):
        with _uncollected(), unit_of_work() as session:
            lapses += steps.claim_lapses(session, at, WORKER, chunk)
    for chunk in _chunks(warn):
        with _uncollected(), unit_of_work() as session:
            result.warned += steps.claim_warnings(session, at, WORKER, chunk)
    with unit_of_work() as session:
        result.progress = progress.send_due(session, at)
    if len(due) + len(warn) > BATCH:
        log.info("SLA pass: %d lapsed, %d warned", len(lapses), result.warned)
    result.lapsed = len(lapses)
    woken: list[int] = []
    for lapse in lapses:
        if runs.wake(lapse.flow_run_id):
            result.woken += 1
            if lapse.escalation_id is not None:
                woken.append(lapse.escalation_id)
    _mark_all_woken(woken)
    result.redelivered = redeliver()
    if start_pending:
        result.started = start_pending_runs()
        # Gated with the start of runs: a pass that starts no runs restarts none either.
        watched = supervise.check(WORKER)
        result.restarted, result.stuck = watched.restarted, watched.stuck
    return result


@contextmanager
def _uncollected() -> Iterator[None]:
    """No cyclic garbage collection during a batch. A batch makes tens of thousands of rows,
    contexts and messages, all alive until it ends and then freed by reference counting:
    collecting meanwhile only walks them again and again (0.2-0.8 s of a pass of 10,000
    warnings). The collector catches up at the end; the other threads of serve lose nothing
    but a collection deferred by a fraction of a second."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i:i + BATCH] for i in range(0, len(ids), BATCH)]


def _mark_all_woken(escalation_ids: list[int]) -> None:
    """_mark_woken for a pass's lapses, a statement per batch. Should the pass die before
    this, redeliver wakes those runs once more, and a run reading its record twice is fine."""
    for chunk in _chunks(escalation_ids):
        with unit_of_work() as session:
            session.execute(update(Escalation).where(
                Escalation.id.in_(chunk), Escalation.delivered_at.is_(None))
                .values(delivered_at=now()).execution_options(synchronize_session=False))


def _mark_woken(escalation_id: int | None) -> None:
    """The run was woken for it; redelivery is only for lapses that never reached a run."""
    with unit_of_work() as session:
        row = session.get(Escalation, escalation_id)
        if row and row.delivered_at is None:
            row.delivered_at = now()


def redeliver() -> int:
    """Wake runs that have not yet read a decision, or were never woken for a lapse."""
    with unit_of_work() as session:
        decisions = session.execute(
            select(Decision.id, Case.flow_run_id).join(Step, Decision.step_id == Step.id)
            .join(Case, Step.case_id == Case.id)
            .where(Decision.delivered_at.is_(None), Case.flow_run_id.is_not(None))
        ).all()
        escalations = session.execute(
            select(Escalation.id, Case.flow_run_id).join(Step, Escalation.step_id == Step.id)
            .join(Case, Step.case_id == Case.id)
            .where(Escalation.handled_at.is_(None), Escalation.delivered_at.is_(None),
                   Case.flow_run_id.is_not(None))
        ).all()
    done = 0
    for _, run_id in decisions:
        done += runs.wake(run_id)
    for escalation_id, run_id in escalations:
        if runs.wake(run_id):
            _mark_woken(escalation_id)
            done += 1
    return done


def start_pending_runs(worker: str = WORKER) -> int:
    """Cases recorded while Prefect was unreachable get their run now. Each start is
    claimed in the database first, so of several replicas exactly one starts it; a claim
    whose holder died before recording the run is taken over when its lease is up."""
    at = now()
    with unit_of_work(write=False) as session:
        pending = session.scalars(select(Case.id).where(
            Case.status == CaseStatus.OPEN, runs.claimable(worker, at)).order_by(Case.id)).all()
    started = 0
    for case_id in pending:
        if runs.start_pending(case_id, worker):
            started += 1
        elif runs.prefect_away():
            break  # each further try would wait out the client's retries: the next pass
    return started


