"""The SLA clock: one pass finds lapsed windows and due warnings, claims each atomically,
wakes the case's run to escalate, and redelivers anything Prefect missed."""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.clock import now
from core.settings import get_settings
from core.vocabulary import CaseStatus
from models import progress, steps
from models.cases import Case, Decision, Escalation, Step
from models.db import get_engine, unit_of_work
from propflow import supervise
from tasks import runs

log = logging.getLogger("propflow.sla")
T = TypeVar("T")
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
    lapses = [lapse for batch in _each_batch(steps.claim_lapses, due, at) for lapse in batch]
    result.warned = sum(_each_batch(steps.claim_warnings, warn, at))
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


def _each_batch(claim: Callable[[Session, datetime, str, list[int]], T], ids: list[int],
                at: datetime) -> list[T]:
    """Claim the steps a batch at a time, each batch in its own transaction. On PostgreSQL
    two batches go at once: while one waits on the database the other builds its messages
    (a pass of 10,000 warnings spent 1.5 s of its 3.6 s waiting). Their steps are disjoint,
    and each batch locks its own, skipping any another holds (models.steps). SQLite has one
    writer at a time: there, one batch after the other."""
    def one(chunk: list[int]) -> T:
        with _uncollected(), unit_of_work() as session:
            return claim(session, at, WORKER, chunk)

    chunks = _chunks(ids)
    if len(chunks) < 2 or get_engine(get_settings().db_url).dialect.name != "postgresql":
        return [one(chunk) for chunk in chunks]
    with ThreadPoolExecutor(2, thread_name_prefix="sla-batch") as pool:
        return list(pool.map(one, chunks))


_collector = threading.Lock()
_uncollecting = [0, False]  # batches inside, and whether the collector was on before them


@contextmanager
def _uncollected() -> Iterator[None]:
    """No cyclic garbage collection during a batch. A batch makes tens of thousands of rows,
    contexts and messages, all alive until it ends and then freed by reference counting:
    collecting meanwhile only walks them again and again (0.2-0.8 s of a pass of 10,000
    warnings). The collector is back once the last batch at once is done; the other
    threads of serve lose nothing but a collection deferred by a fraction of a second."""
    with _collector:
        if _uncollecting[0] == 0:
            _uncollecting[1] = gc.isenabled()
            gc.disable()
        _uncollecting[0] += 1
    try:
        yield
    finally:
        with _collector:
            _uncollecting[0] -= 1
            if _uncollecting[0] == 0 and _uncollecting[1]:
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


