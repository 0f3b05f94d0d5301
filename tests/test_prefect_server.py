"""The Prefect server scripts/run starts (propflow.prefect_server): on its embedded SQLite,
runs created at once from one deployment are all created, none refused with a 503.

Prefect's own `prefect server start` refuses some of them: its write transaction reads the
deployment first, and a write committed in between cannot be followed (SQLITE_BUSY_SNAPSHOT).
Each refusal cost an opening a sleep before trying again (README "Benchmarks")."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.prefectkit import started_server

pytestmark = pytest.mark.slow
OPENERS, EACH = 6, 15


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Any:
    # On its own SQLite, not on the tests' settings (their server may be on PostgreSQL).
    with started_server(tmp_path, own_settings=True) as url:
        yield url


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
