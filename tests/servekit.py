"""The served service for tests: `propflow serve` as a real subprocess on the training
clock, killed with SIGKILL as a crash would, and helpers to watch its runs and steps."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from core.clock import set_clock
from models.cases import Case, Step
from models.db import unit_of_work
from tests.flowkit import until

ROOT = Path(__file__).resolve().parents[1]


class Service:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.proc = env, log, None
        self.web_port = free_port()  # replicas and parallel tests never share 8080

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        env = dict(self.env, PROPFLOW_WEB_PORT=str(self.web_port), PROPFLOW_WEB_HOST="127.0.0.1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "propflow.cli", "serve"], cwd=ROOT, env=env,
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        from prefect.client.orchestration import get_client

        def served() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            with get_client(sync_client=True) as client:
                try:
                    client.read_deployment_by_name("repair/repair")
                except Exception:
                    return False
            return "polling for scheduled runs" in self.log.read_text()
        # Generous: on CI's two cores with two test workers a start took over 90 s (2026-12-01).
        until("the service to serve its deployments", served, timeout=240)

    def children(self) -> list[str]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                             capture_output=True, text=True).stdout
        return out.split()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # a crash, not a polite shutdown
            self.proc.wait(10)


@pytest.fixture
def service(demo, prefect_api, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PROPFLOW_MODE", "training")
    set_clock(None)  # the service and this test share the training clock in the database
    from core.settings import reset_settings

    reset_settings()
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PROPFLOW_SLA_INTERVAL_SECONDS="1",
               PREFECT_RUNNER_POLL_FREQUENCY="1", PROPFLOW_HOME=str(tmp_path))
    svc = Service(env, tmp_path / "serve.log")
    yield svc
    svc.stop()
    if svc.log.exists():  # shown by pytest only when the test failed
        print("---- propflow serve log (tail) ----")
        print(svc.log.read_text(errors="replace")[-6000:])
        with unit_of_work() as session:
            for number, run_id in session.execute(select(Case.number, Case.flow_run_id)):
                print(f"{number}: run {run_id} {state(run_id) if run_id else ''}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def state(run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
        return state.name if state else ""


def waiting(number: str, key: str) -> int | None:
    with unit_of_work() as session:
        step = session.scalars(select(Step).join(Case).where(
            Case.number == number, Step.key == key, Step.status == "waiting")).first()
        return step.id if step else None


def run_of(number: str) -> str | None:
    with unit_of_work() as session:
        return session.scalars(select(Case.flow_run_id).where(Case.number == number)).first()


def decide(number: str, key: str, staff: int, **values: Any) -> None:
    """Decide the step once it waits and its run has suspended: the answer is replayed."""
    from propflow import actions

    step_id = until(key, lambda: waiting(number, key))
    until(f"the run to suspend at {key}",
          lambda: (run := run_of(number)) is not None and state(run) == "Suspended")
    actions.decide(step_id, staff, values)
