"""Prefect retries for the tasks that work on the database.

A lock held too long or a dropped connection is worth trying again a little later: the
task is retried with exponential backoff. Nothing else is: a refused reference or a bug
would only fail again. Each unit of work rolls back whole when it fails, and every task
is idempotent (keyed in the database), so running one again repeats nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from sqlalchemy.exc import DBAPIError, OperationalError

from core.errors import PropflowError
from tasks import replay

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


class DbTask(Task):  # type: ignore[type-arg]
    """A task whose recorded result a resumed run reuses instead of running it again
    (tasks.replay); `from_journal=False` for a read whose answer may have changed since."""

    from_journal = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.from_journal or kwargs.get("return_state") or kwargs.get("wait_for"):
            return super().__call__(*args, **kwargs)
        return replay.call(self, args, kwargs, self.live)

    def live(self, *args: Any, **kwargs: Any) -> Any:
        """Run it as a Prefect task whatever the journal holds."""
        return super().__call__(*args, **kwargs)


def db_task(*, from_journal: bool = True,
            **options: Any) -> Callable[[Callable[..., Any]], DbTask]:
    # Delays of about 1, 2, 4 and 8 s: each attempt already waits for a lock (models.db).
    settings: dict[str, Any] = dict(
        cache_policy=NO_CACHE, retries=4, retry_delay_seconds=exponential_backoff(
            backoff_factor=1), retry_jitter_factor=0.5, retry_condition_fn=transient)

    def decorate(fn: Callable[..., Any]) -> DbTask:
        made = DbTask(fn=fn, **{**settings, **options})
        made.from_journal = from_journal
        return made
    return decorate
