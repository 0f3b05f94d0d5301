"""A resumed run replays its body from a journal of its own task results, not by running
every earlier task again.

A served run suspends at every human step and replays its body from the top when resumed.
Every task is idempotent, so running them all again was correct, but each one became a new
task run in the Prefect UI (a four-step repair showed 58) and the replay grew with the case.
Now the results of the tasks a run executed are written, just before it suspends, to the
run itself in Prefect (a flow-run input per execution, `propflow-journal-N`); the next
execution reads them once and returns a recorded result for a call with the same task,
arguments and occurrence instead of running it. The UI shows the work each resume did.

The journal belongs to one flow run: a run restarted by supervision starts with none and
replays everything from the database, as before. A run that pauses in place (started by
hand) never replays and keeps none. A journal that cannot be read or written costs only
speed: the tasks run again, idempotent as ever.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

log = logging.getLogger("propflow.replay")

PREFIX = "propflow-journal-"
_ITEMS = "__items__"  # a dict whose keys are not all strings (read-steps: by step id)


class Journal:
    """The recorded results of one execution of one flow run, and those it adds."""

    def __init__(self, context: Any) -> None:
        self.context = context  # the FlowRunContext of this execution
        self.entries: dict[str, Any] = {}
        self.fresh: dict[str, Any] = {}
        self.calls: Counter[str] = Counter()
        self.next_chunk = 0
        self.replayed = 0

    def key(self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        bound = inspect.signature(task.fn).bind(*args, **kwargs)
        bound.apply_defaults()
        digest = hashlib.sha1(json.dumps(bound.arguments, sort_keys=True, default=str,
                                         ensure_ascii=False).encode()).hexdigest()[:16]
        call = f"{task.name}:{digest}"
        self.calls[call] += 1  # the same call again (a second wake-up) is another entry
        return f"{call}:{self.calls[call]}"

    def load(self) -> None:
        try:
            chunks = _client(self.context).filter_flow_run_input(
                flow_run_id=self.context.flow_run.id, key_prefix=PREFIX, limit=10_000,
                exclude_keys=set())
        except Exception as exc:  # replaying from the database is slower, not wrong
            log.info("run journal not read: %r", exc)
            return
        numbered = sorted((int(c.key[len(PREFIX):]), c.value) for c in chunks
                          if c.key[len(PREFIX):].isdigit())
        for _, value in numbered:  # later executions overwrite what they read again
            self.entries.update(json.loads(value))
        self.next_chunk = numbered[-1][0] + 1 if numbered else 0

    def flush(self) -> None:
        if not self.fresh:
            return
        key = f"{PREFIX}{self.next_chunk}"
        try:
            _client(self.context).create_flow_run_input(
                flow_run_id=self.context.flow_run.id, key=key,
                value=json.dumps(self.fresh, ensure_ascii=False), sender="propflow")
        except Exception as exc:
            log.info("run journal %s not written: %r", key, exc)
            return
        self.entries.update(self.fresh)
        self.fresh, self.next_chunk = {}, self.next_chunk + 1


_current: ContextVar[Journal | None] = ContextVar("propflow_journal", default=None)


def current() -> Journal | None:
    """This execution's journal; None where a run never replays (no deployment: it pauses
    in place) or outside a flow body."""
    from prefect.context import FlowRunContext, TaskRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or not context.flow_run.deployment_id \
            or TaskRunContext.get() is not None:
        return None
    journal = _current.get()
    if journal is None or journal.context is not context:
        journal = Journal(context)
        journal.load()
        _current.set(journal)
    return journal


def call(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
         run: Callable[..., Any], accept: Callable[[Any], bool] | None = None) -> Any:
    """The recorded result of this call if there is one (and `accept` takes it), else run
    the task and record what it returned."""
    journal = current()
    if journal is None:
        return run(*args, **kwargs)
    key = journal.key(task, args, kwargs)
    recorded = journal.fresh.get(key, journal.entries.get(key, _MISSING))
    if recorded is not _MISSING:
        result = _decode(recorded)
        if accept is None or accept(result):
            journal.replayed += 1
            return result
    result = run(*args, **kwargs)
    try:
        journal.fresh[key] = _encode(result)
    except TypeError:  # not plain data: this call simply runs again on replay
        pass
    return result


def before_suspend() -> None:
    """Write what this execution added, for the next one to read; say what it skipped."""
    journal = current()
    if journal is None:
        return
    if journal.replayed:
        from prefect import get_run_logger

        get_run_logger().info("按记录重放 %d 个已完成的任务，未重新执行 (replayed %d recorded "
                              "task results without running them again)",
                              journal.replayed, journal.replayed)
        journal.replayed = 0
    journal.flush()


def _client(context: Any) -> Any:
    from prefect.client.orchestration import SyncPrefectClient

    if not isinstance(context.client, SyncPrefectClient):  # our flows are all sync
        raise RuntimeError("the run has no synchronous Prefect client")
    return context.client


_MISSING = object()


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and k != _ITEMS for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {_ITEMS: [[_encode(k), _encode(v)] for k, v in value.items()]}
    raise TypeError(f"not journalled: {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {_ITEMS}:
            return {_decode(k): _decode(v) for k, v in value[_ITEMS]}
        return {k: _decode(v) for k, v in value.items()}
    return value
