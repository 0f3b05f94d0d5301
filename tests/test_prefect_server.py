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


# A flow run deleted while its tasks still run, beside one that is kept (run in a process of
# its own, so that its Prefect client and events go to this server only).
DELETED_BESIDE_KEPT = '''
import threading, time
from uuid import UUID
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

@task
def step(i: int) -> int:
    return i

@flow
def deleted() -> None:
    with get_client(sync_client=True) as client:
        client.delete_flow_run(UUID(flow_run.id))
    gone.set()
    until = time.monotonic() + 5
    while time.monotonic() < until:  # its task runs' events name a flow run no longer there
        step(0)
        time.sleep(0.05)

@flow
def kept() -> str:
    for i in range(5):
        step(i)
        time.sleep(0.2)
    return flow_run.id

gone = threading.Event()
def delete_itself() -> None:
    try:
        deleted()
    except Exception:
        pass  # its end cannot be recorded: the run is gone
other = threading.Thread(target=delete_itself)
other.start()
gone.wait(60)
print(kept())
other.join()
'''


def test_a_deleted_run_s_task_runs_lose_no_other_run_s(sqlite_server: str, tmp_path: Path) -> None:
    """The server records task runs from their events in batches: an event of a run deleted
    meanwhile cannot be written, and must not take the batch's other events with it (Prefect
    tries a failed batch five times, then drops it whole)."""
    import os
    import subprocess
    import sys

    from tests.flowkit import until

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_API_URL": sqlite_server, "PREFECT_HOME": str(tmp_path / "client-home"),
        "PREFECT_LOGGING_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-c", DELETED_BESIDE_KEPT], env=env, timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    kept = done.stdout.strip().splitlines()[-1]

    def recorded() -> list[str]:
        with httpx.Client(base_url=sqlite_server, timeout=60) as api:
            found = api.post("/task_runs/filter", json={
                "flow_runs": {"id": {"any_": [kept]}}, "limit": 50}).raise_for_status().json()
        return sorted(t["state_type"] for t in found)
    until("the kept run's five task runs, completed",
          lambda: recorded() == ["COMPLETED"] * 5, timeout=60)
