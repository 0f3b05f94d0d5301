"""The Prefect server scripts/run starts (propflow.prefect_server): on its embedded SQLite,
runs created at once from one deployment are all created, none refused with a 503, and a
request that reads inside its own write (pausing a work queue) is not made to wait on itself.

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


def test_the_operator_pauses_and_resumes_the_work_queue(sqlite_server: str) -> None:
    """Pausing a queue writes it, then reads its status to announce the change. Were the
    read made to take the write lock too, it would wait on its own request for Prefect's
    busy timeout (60 s) and the operator would be answered 503, every time."""
    with httpx.Client(base_url=sqlite_server, timeout=120) as api:
        api.post("/work_pools/", json={"name": "propflow", "type": "process"}).raise_for_status()
        queue = "/work_pools/propflow/queues/procedures"
        api.post("/work_pools/propflow/queues", json={"name": "procedures"}).raise_for_status()
        assert api.patch(queue, json={"is_paused": True}).status_code == 204
        assert api.get(queue).json()["is_paused"] is True
        assert api.patch(queue, json={"is_paused": False}).status_code == 204
        assert api.get(queue).json()["status"] != "PAUSED"
