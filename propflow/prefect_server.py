"""`prefect server start` for propflow: Prefect's own command, its SQLite writes made to wait
for each other instead of failing.

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

Only SQLite is touched, and only in this process: on PostgreSQL nothing changes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any


def immediate_writes() -> None:
    """Every transaction the SQLite configuration begins for a write takes the lock first."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    begin: Callable[..., AbstractAsyncContextManager[Any]] = (
        AioSqliteConfiguration.begin_transaction)
    if getattr(begin, "propflow_immediate", False):
        return

    def begin_immediate(self: AioSqliteConfiguration, session: Any,
                        with_for_update: bool = False) -> AbstractAsyncContextManager[Any]:
        return begin(self, session, with_for_update=True)

    begin_immediate.propflow_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_immediate  # type: ignore[assignment,method-assign]


def _prepare() -> None:
    """What both entry points set before Prefect's server is imported."""
    from core import prefect_env

    prefect_env.configure_server()
    immediate_writes()


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
