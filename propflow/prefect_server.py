"""`prefect server start` for propflow: Prefect's own command, its SQLite writes made to wait
for each other instead of failing, and a task-run event it cannot record losing only itself.

    python -m propflow.prefect_server start --host 127.0.0.1 --port 4200   (scripts/run)
    uvicorn --factory propflow.prefect_server:create_app                   (the tests)

On SQLite, Prefect's server begins a write transaction DEFERRED: it reads, then writes. When
another write commits in between, SQLite cannot upgrade the read (SQLITE_BUSY_SNAPSHOT, no
waiting) and the server answers 503. In a burst of openings about every other creation of a
run was refused so, and the opener spent most of its time asleep before trying again
(README "Benchmarks"). Prefect's own comment on its SQLite set-up names the cure, "use the
IMMEDIATE transaction mode": each write transaction then takes the write lock first, waiting
for it (busy_timeout, 60 s), and nothing is refused. Prefect uses IMMEDIATE only for the
transactions that ask for it (`with_for_update`); here every write transaction does.

Only SQLite is touched, and only in this process: on PostgreSQL nothing changes. Prefect's
busy timeout is 60 s (hard-coded in its SQLite set-up).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def immediate_writes() -> None:
    """Every transaction the SQLite configuration begins for a write takes the lock first.

    Only its own BEGIN: Prefect keeps the mode in a context variable that a session opened
    inside reads too, and a read inside a write (pausing a work queue reads the queue's
    status to announce it) would then wait on the lock its own request holds, for the whole
    busy timeout, and be answered 503. Once this transaction has begun, sessions opened
    inside begin as Prefect would begin them."""
    from prefect.server.database.configurations import SQLITE_BEGIN_MODE, AioSqliteConfiguration

    if getattr(AioSqliteConfiguration.begin_transaction, "propflow_immediate", False):
        return

    @asynccontextmanager
    async def begin_immediate(self: AioSqliteConfiguration, session: Any,
                              with_for_update: bool = False) -> AsyncIterator[Any]:
        token = SQLITE_BEGIN_MODE.set("IMMEDIATE")
        try:
            async with session.begin() as transaction:
                await session.connection()  # BEGIN IMMEDIATE, now, on this connection
                SQLITE_BEGIN_MODE.set("IMMEDIATE" if with_for_update else "DEFERRED")
                yield transaction
        finally:
            SQLITE_BEGIN_MODE.reset(token)

    begin_immediate.propflow_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_immediate  # type: ignore[method-assign]


def isolated_task_run_batches() -> None:
    """A batch of task-run events the recorder cannot write is written one event at a time.

    propflow has the recorder write its events in batches (core.prefect_env.SERVER). An
    event whose flow run is gone (deleted while its tasks still ran) fails the whole
    batch's INSERT; Prefect tries the batch again five times, then drops every event in it,
    the other cases' task runs with it. One at a time, only that event is discarded, as
    Prefect does with batches of one."""
    from prefect.server.services import task_run_recorder
    from sqlalchemy.exc import IntegrityError

    batch = task_run_recorder.record_bulk_task_run_events
    if getattr(batch, "propflow_isolated", False):
        return

    async def record_isolated(events: list[Any]) -> None:
        try:
            await batch(events)
        except IntegrityError:
            if len(events) == 1:
                raise
            for event in events:  # through record_bulk_task_run_events([event]) again
                await task_run_recorder.record_task_run_event(event)

    record_isolated.propflow_isolated = True  # type: ignore[attr-defined]
    task_run_recorder.record_bulk_task_run_events = record_isolated


def _prepare() -> None:
    """What both entry points set before Prefect's server is imported."""
    from core import prefect_env

    prefect_env.configure_server()
    immediate_writes()
    isolated_task_run_batches()


def create_app() -> Any:
    """Prefect's application factory, for uvicorn, with immediate writes."""
    _prepare()
    from prefect.server.api.server import create_app as prefect_app

    return prefect_app()


def main(argv: list[str]) -> None:
    _prepare()
    from prefect.cli import app

    sys.argv[1:] = ["server", *argv]  # Prefect's entry point reads its arguments there
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
