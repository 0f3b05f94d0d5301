"""Case runs executed inside `propflow serve`: a few threads, not a new interpreter per run.

Prefect's Runner starts every flow run, a resumed one too, in a freshly spawned Python
process: 1.6-4.4 s and ~90 MiB before the body even replays (see the README, "Benchmarks").
Here the service itself takes its deployments' Scheduled runs (new, or resumed after a
suspend), proposes Pending exactly as the Runner does, so that of several replicas only
one takes a run, and executes each with `prefect.flow_engine.run_flow` in a bounded pool of
threads. A suspend still ends the run's execution (Prefect raises `Pause` out of
`run_flow`): a waiting case holds no thread, no process and no memory, and a resume replays
the body from the record.

What the Runner's child process gave and threads do not: a run cannot be killed on its own.
A run cancelled in Prefect stops at its next task (the engine is refused).

Nor is there a parent left to say that a run died with its service: a `kill -9` of
`propflow serve` leaves the runs it had taken Pending or Running in Prefect, with nobody
executing them. So a run taken here carries a heartbeat: its `infrastructure_pid` (where
Prefect's Runner puts a child's pid) names this service and a counter that moves every
PROPFLOW_RUN_HEARTBEAT_SECONDS while the run executes. Run supervision, in any replica or in
this service restarted, restarts a Pending or Running run whose beat stopped
(propflow.supervise, `beat`) at once rather than after `supervision.stuck_after`.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

log = logging.getLogger("propflow.executor")

# What a heartbeat's infrastructure_pid starts with. No colon: a Prefect process worker reads
# "host:pid" there as a process of its own to kill on cancellation.
BEAT = "propflow-serve/"


class Executor:
    """Polls Prefect for Scheduled runs of our deployments and runs them in threads."""

    def __init__(self, deployments: list[Any], flows: list[Any], threads: int,
                 poll_seconds: float, heartbeat_seconds: float) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.me = f"{BEAT}{socket.gethostname()}/{os.getpid()}"
        self._beats = itertools.count(1)
        self.deployments = deployments
        self.flows = {flow.name: flow for flow in flows}
        self.threads = max(1, threads)
        self.poll_seconds = poll_seconds
        self.by_deployment: dict[UUID, Any] = {}
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="case-run")
        self._taken: set[UUID] = set()
        self._lock = threading.Lock()
        self._poked = threading.Event()
        self._stopping = threading.Event()

    def register(self) -> None:
        """Create or update the deployments, served by this process (no work pool)."""
        for deployment in self.deployments:
            self.by_deployment[deployment.apply()] = self.flows[deployment.flow_name]

    def poke(self) -> None:
        """Look for runs now rather than at the next poll: a wake-up was just sent from here."""
        self._poked.set()

    def stop(self) -> None:
        self._stopping.set()
        self._poked.set()

    def serve_forever(self) -> None:
        from prefect.client.orchestration import get_client

        # The same words as Prefect's `serve`, which scripts and tests wait for.
        print(f"propflow serve：流程在本进程内执行，最多 {self.threads} 个并行 (runs execute "
              f"in this process, {self.threads} at a time); polling for scheduled runs every "
              f"{self.poll_seconds:g}s", flush=True)
        threading.Thread(target=self._heartbeat, name="run-heartbeat", daemon=True).start()
        with get_client(sync_client=True) as client:
            while not self._stopping.is_set():
                self._poked.clear()
                try:
                    self._take(client)
                except Exception as exc:  # Prefect away: the next poll tries again
                    log.warning("could not look for scheduled runs: %r", exc)
                self._poked.wait(self.poll_seconds)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _take(self, client: Any) -> None:
        from prefect.exceptions import Abort
        from prefect.states import Pending
        from prefect.utilities.engine import propose_state_sync

        with self._lock:
            free = self.threads - len(self._taken)
        if free <= 0:
            return  # a finishing run pokes us
        runs = client.get_scheduled_flow_runs_for_deployments(
            deployment_ids=list(self.by_deployment),
            scheduled_before=datetime.now(UTC) + timedelta(seconds=1), limit=free)
        for run in sorted(runs, key=lambda r: r.next_scheduled_start_time or datetime.min
                          .replace(tzinfo=UTC)):
            with self._lock:
                if run.id in self._taken or len(self._taken) >= self.threads:
                    continue
            try:
                # Marked before it is taken, so that a run is never Pending here without a
                # beat; a replica that wins it instead marks it with its own.
                self._beat(client, run.id)
                # Scheduled -> Pending is granted once: another replica's proposal is refused.
                state = propose_state_sync(client, Pending(), flow_run_id=run.id)
            except Abort:
                continue
            except Exception as exc:
                log.info("could not take run %s: %r", run.id, exc)
                continue
            if not state.is_pending():
                continue
            with self._lock:
                self._taken.add(run.id)
            self._pool.submit(self._execute, run)

    def _beat(self, client: Any, run_id: UUID) -> None:
        client.update_flow_run(run_id, infrastructure_pid=f"{self.me}/{next(self._beats)}")

    def _heartbeat(self) -> None:
        """Move the beat of every run executing here. A thread of its own: a long pass of
        the SLA clock or a busy poll must not make a live run look abandoned."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            while True:
                time.sleep(self.heartbeat_seconds)
                with self._lock:
                    taken = list(self._taken)
                if not taken and self._stopping.is_set():
                    return  # a polite stop beats on until every run has reached its wait
                for run_id in taken:
                    try:
                        self._beat(client, run_id)
                    except Exception as exc:  # one missed beat is far from six
                        log.info("could not beat for run %s: %r", run_id, exc)

    def _execute(self, run: Any) -> None:
        from prefect.exceptions import Abort, Pause
        from prefect.flow_engine import run_flow

        flow = self.by_deployment[run.deployment_id]
        t0 = time.monotonic()
        try:
            state = run_flow(flow, flow_run=run, return_type="state")
            log.info("%s: %s in %.2fs", run.name, getattr(state, "name", state),
                     time.monotonic() - t0)
        except Pause:  # suspended: waiting for a person, holding nothing
            log.info("%s: suspended after %.2fs", run.name, time.monotonic() - t0)
        except Abort as exc:  # refused by Prefect (cancelled or taken elsewhere)
            log.info("%s: stopped, Prefect refused it: %s", run.name, exc)
        except BaseException as exc:  # noqa: BLE001 - the service goes on whatever a run does
            log.exception("%s: the engine failed", run.name)
            _crashed(run.id, f"propflow serve: the run's engine failed: {exc!r}")
        finally:
            with self._lock:
                self._taken.discard(run.id)
            self._poked.set()  # a slot is free


def _crashed(run_id: UUID, message: str) -> None:
    """Tell Prefect, as the Runner does for a process that died, so supervision restarts it
    at once; if even that fails, supervision finds it stopped after `stuck_after`."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed
    from prefect.utilities.engine import propose_state_sync

    try:
        with get_client(sync_client=True) as client:
            propose_state_sync(client, Crashed(message=message), flow_run_id=run_id)
    except BaseException as exc:  # noqa: BLE001
        log.info("could not report run %s crashed: %r", run_id, exc)
