"""The Prefect server scripts/run starts (propflow.prefect_server): on its embedded SQLite,
runs created at once from one deployment are all created, none refused with a 503.

Prefect's own `prefect server start` refuses some of them: its write transaction reads the
deployment first, and a write committed in between cannot be followed (SQLITE_BUSY_SNAPSHOT).
Each refusal cost an opening a sleep before trying again (README "Benchmarks")."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.flowkit import until
from tests.servekit import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
OPENERS, EACH = 6, 15


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Any:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_UI_ENABLED="false",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
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
        except httpx.TransportError:
            return False
    try:
        until("the Prefect server", healthy, timeout=180)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def test_runs_created_at_once_from_one_deployment_are_all_created(sqlite_server: str) -> None:
    with httpx.Client(base_url=sqlite_server, timeout=60) as api:
        flow = api.post("/flows/", json={"name": "repair"}).raise_for_status().json()
        deployment = api.post("/deployments/", json={
            "name": "repair", "flow_id": flow["id"]}).raise_for_status().json()

    answers: Counter[int] = Counter()
    created: list[str] = []
    lock = threading.Lock()

    def open_cases(opener: int) -> None:
        # Plain HTTP, no retries: a refusal is counted, not hidden by a client's backoff.
        with httpx.Client(base_url=sqlite_server, timeout=120) as api:
            for i in range(EACH):
                answer = api.post(f"/deployments/{deployment['id']}/create_flow_run",
                                  json={"name": f"BX-{opener}-{i}", "parameters": {}})
                with lock:
                    answers[answer.status_code] += 1
                    if answer.status_code == 201:
                        created.append(answer.json()["id"])
    openers = [threading.Thread(target=open_cases, args=(n,)) for n in range(OPENERS)]
    for thread in openers:
        thread.start()
    for thread in openers:
        thread.join()

    assert answers == {201: OPENERS * EACH}
    with httpx.Client(base_url=sqlite_server, timeout=60) as api:
        runs = api.post("/flow_runs/filter", json={"limit": 200, "sort": "ID_DESC"})
    assert sorted(r["id"] for r in runs.raise_for_status().json()) == sorted(created)
