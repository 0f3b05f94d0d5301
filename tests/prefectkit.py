"""The tests' Prefect API server, on PostgreSQL when it is reachable, as in production.

Prefect's own `prefect_test_harness` always puts the server on SQLite. There, the writes that
served runs, their journals and the task-run recorder make at once collide ("database is
locked"), the server answers 503 and its clients back off for seconds: the 200-case burst
took 155 s with Prefect on SQLite against 65 s on PostgreSQL (README "Benchmarks"), and the
served tests spent their time the same way. This is the harness with the server's database
given, so a served test waits on propflow, not on SQLite's single writer, and serving the
application scripts/run serves (propflow.prefect_server), on either database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from tests.servekit import free_port

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def prefect_server(database_url: str, startup_timeout: int = 180) -> Iterator[str]:
    """A Prefect server in a subprocess on `database_url`; this process's Prefect settings
    point at it while the context lasts. Yields the API URL."""
    import prefect.context
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.server.database.dependencies import temporary_database_interface
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    with ExitStack() as stack:
        stack.enter_context(temporary_database_interface())
        # The subprocess is started with the settings in effect, this URL among them.
        stack.enter_context(temporary_settings(
            updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: database_url}))
        server = _server_class()(port=free_port())
        # As prefect_test_harness does: code that asks for "the" subprocess server during a
        # flow run finds this one instead of starting another (PrefectHQ/prefect#21544).
        prior = SubprocessASGIServer._instances.get(None)
        SubprocessASGIServer._instances[None] = server
        server.start(timeout=startup_timeout)
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
        stack.enter_context(prefect.context._temporary_global_settings_context(
            prefect.context.get_settings_context()))
        try:
            yield server.api_url
        finally:
            server.stop()
            if prior is None:
                SubprocessASGIServer._instances.pop(None, None)
            else:
                SubprocessASGIServer._instances[None] = prior


@contextmanager
def started_server(tmp_path: Path, own_settings: bool = False, **env: str) -> Iterator[str]:
    """`prefect server start` as scripts/run starts it (propflow.prefect_server), in its own
    process on a free port, with `env` over this process's environment (without
    PREFECT_API_URL, or with `own_settings` without any Prefect setting of the tests);
    yields its API URL and kills it at the end."""
    import httpx

    from tests.flowkit import until

    port = free_port()
    dropped = "PREFECT_" if own_settings else "PREFECT_API_URL"
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)} | dict(
        PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false") | env
    log = tmp_path / "prefect-server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "propflow.prefect_server", "start", "--host", "127.0.0.1",
         "--port", str(port)], cwd=ROOT, env=env, stdout=log.open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        assert server.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        until("the Prefect server", healthy, timeout=180)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


def _server_class() -> Any:
    from prefect.server.api import server as prefect_server

    class PropflowServer(prefect_server.SubprocessASGIServer):
        """Prefect's test server with the application propflow's scripts/run serves
        (propflow.prefect_server: on SQLite, writes wait for each other instead of 503)."""

        def _run_uvicorn_command(self) -> Any:
            popen = subprocess.Popen

            def ours(args: list[str], **kwargs: Any) -> Any:
                args = ["propflow.prefect_server:create_app"
                        if a == "prefect.server.api.server:create_app" else a for a in args]
                assert "propflow.prefect_server:create_app" in args, args
                return popen(args, **kwargs)
            with mock.patch.object(prefect_server.subprocess, "Popen", ours):
                return super()._run_uvicorn_command()
    return PropflowServer


def forget_unfinished_runs() -> int:
    """Delete every flow run on the session's server that has not finished; returns how many.

    The server outlives each test, and so do the runs a test left waiting, scheduled or
    resumed. The next test's `propflow serve` would take them as its own, run them against its
    own fresh database and fail ("case 2 missing", a complaint's run asking for a repair's
    window); supervision then restarts a run and a test counting runs finds two (CI,
    2026-12-01). A production server has one company's runs; each test starts from that."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    unfinished = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[
        StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED,
        StateType.CANCELLING])))
    deleted = 0
    with get_client(sync_client=True) as client:
        while runs := client.read_flow_runs(flow_run_filter=unfinished, limit=200,
                                            sort=FlowRunSort.ID_DESC):
            for run in runs:
                client.delete_flow_run(run.id)
            deleted += len(runs)
    return deleted
