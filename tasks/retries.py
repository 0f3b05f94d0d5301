"""Prefect retries for the tasks that work on the database.

A lock held too long or a dropped connection is worth trying again a little later: the
task is retried with exponential backoff. Nothing else is: a refused reference or a bug
would only fail again. Each unit of work rolls back whole when it fails, and every task
is idempotent (keyed in the database), so running one again repeats nothing.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from sqlalchemy.exc import DBAPIError, OperationalError

from core.errors import PropflowError

TRANSIENT = ("database_busy", "database_unreachable")


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry_condition_fn: retry only what a moment's wait can cure."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:
            return False
    if isinstance(exc, PropflowError):
        return exc.code in TRANSIENT
    if isinstance(exc, DBAPIError):
        return isinstance(exc, OperationalError) or exc.connection_invalidated
    return False


# Delays of about 1, 2, 4 and 8 s: each attempt already waits for a lock (models.db).
db_task = partial(task, cache_policy=NO_CACHE, retries=4,
                  retry_delay_seconds=exponential_backoff(backoff_factor=1),
                  retry_jitter_factor=0.5, retry_condition_fn=transient)
