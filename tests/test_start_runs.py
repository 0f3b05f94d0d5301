"""The start of pending runs: a case recorded while Prefect was away gets exactly one run,
however many replicas' SLA clocks look for it at once.

The first tests stand in for Prefect (`runs.start`) to hold one replica in the middle of a
start while another passes; the last one starts real runs from a served service while two
more replicas (`propflow clock advance`, which runs an SLA pass) look at the same time.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select

from models.cases import Case
from models.db import unit_of_work
from propflow import actions, sla
from tasks import runs
from tests.flowkit import REPAIR, until


def _record_starts(monkeypatch, hold: threading.Event | None = None) -> list[tuple[str, str]]:
    """Stand in for Prefect: each start is recorded; replica A's first waits for `hold`."""
    started: list[tuple[str, str]] = []

    def start(procedure: str, case_id: int, number: str) -> str:
        who = threading.current_thread().name
        started.append((number, who))
        if hold is not None and who == "replica-a":
            assert hold.wait(120), "replica B never finished its pass"
        return f"run-{number}-{len(started)}"

    monkeypatch.setattr(runs, "start", start)
    return started


def _runs() -> dict[str, str | None]:
    with unit_of_work(write=False) as session:
        return dict(session.execute(select(Case.number, Case.flow_run_id)).all())


def test_two_replicas_start_each_pending_case_exactly_once(demo, monkeypatch):
    numbers = [actions.open_repair(start_run=False, **REPAIR)["number"] for _ in range(3)]
    b_done = threading.Event()
    started = _record_starts(monkeypatch, hold=b_done)

    # Replica A claims the first case and is held inside Prefect's start call ...
    a = threading.Thread(target=sla.start_pending_runs, args=("sla@a:1",), name="replica-a")
    a.start()
    until("replica A inside a start", lambda: started)
    # ... while replica B passes: it must leave A's case alone and start the others.
    sla.start_pending_runs("sla@b:2")
    b_done.set()
    a.join()

    assert sorted(number for number, _ in started) == sorted(numbers)
    assert started[0] == (numbers[0], "replica-a")
    recorded = _runs()
    assert all(recorded[n] for n in numbers)
    # Another pass finds nothing left to start.
    assert sla.start_pending_runs("sla@c:3") == 0 and len(started) == 3


def test_a_case_opened_while_prefect_is_away_is_started_by_the_next_pass(demo, monkeypatch):
    monkeypatch.setattr(runs, "start", lambda *args: None)  # Prefect unreachable
    opened = actions.open_repair(**REPAIR)
    assert opened["flow_run_id"] is None and "Prefect 暂不可达" in opened["note"]

    started = _record_starts(monkeypatch)
    assert sla.start_pending_runs() == 1  # no lease to wait for: the opener let go
    assert started == [(opened["number"], threading.current_thread().name)]
    assert actions.show_case(opened["number"])["flow_run_id"] == f"run-{opened['number']}-1"


def test_a_start_left_by_a_process_that_died_is_taken_over_after_its_lease(
        demo, clock, monkeypatch):
    number = actions.open_repair(start_run=False, **REPAIR)["number"]
    with unit_of_work() as session:  # an opener that died between its commit and Prefect
        case_id = session.scalars(select(Case.id).where(Case.number == number)).one()
        assert runs.claim(session, case_id, "open@elsewhere:99")
    started = _record_starts(monkeypatch)

    assert sla.start_pending_runs() == 0 and started == []
    clock.advance(runs.CLAIM_LEASE + timedelta(seconds=1))
    assert sla.start_pending_runs() == 1 and [n for n, _ in started] == [number]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    from tests.servekit import ROOT

    return subprocess.run([sys.executable, "-m", "propflow.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_cases_recorded_while_prefect_was_away_get_one_run_each_from_three_replicas(
        service, demo):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    from tests.servekit import waiting

    away = dict(service.env, PREFECT_API_URL=f"http://127.0.0.1:{_closed_port()}/api")
    numbers = []
    for i in range(4):
        done = _cli(away, "repair", "open", "--unit", "1-1-101", "--category", "public_area",
                    "--priority", "medium", "--reporter", f"业主{i}", "--phone", "13800138000",
                    "--description", "楼道灯不亮", "--json")
        assert done.returncode == 0, done.stderr
        numbers.append(json.loads(done.stdout)["number"])
    assert not any(_runs()[n] for n in numbers)

    def runs_of(number: str) -> set[str]:
        with get_client(sync_client=True) as client:
            found = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[number])),
                sort=FlowRunSort.ID_DESC, limit=50)
        return {str(r.id) for r in found}

    before = {n: runs_of(n) for n in numbers}  # earlier tests' cases may share a number
    # Prefect is back: the service's SLA clock and two one-shot passes look at once.
    service.start()
    with ThreadPoolExecutor(max_workers=2) as pool:
        passes = list(pool.map(lambda _: _cli(service.env, "clock", "advance", "1s"), range(2)))
    assert all(p.returncode == 0 for p in passes), [p.stderr for p in passes]

    for number in numbers:
        until(f"{number}'s first step", lambda number=number: waiting(number, "accept#1"))
    recorded = _runs()
    for number in numbers:
        new = runs_of(number) - before[number]
        assert new == {recorded[number]}, f"{number}: {len(new)} runs"



def test_an_open_whose_run_cannot_be_recorded_still_reports_the_saved_case(
        demo, db, monkeypatch):
    """Reporting a failure after the case was saved would have the user open it twice."""
    if not db.startswith("sqlite"):
        pytest.skip("SQLite's file lock")
    import sqlite3

    from models import db as db_module

    monkeypatch.setattr(db_module, "BUSY_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(db_module, "BUSY_BACKOFF_SECONDS", 0.01)
    db_module.dispose_engines()
    holder = sqlite3.connect(db.removeprefix("sqlite:///"), isolation_level=None)

    def start(procedure: str, case_id: int, number: str) -> str:
        holder.execute("BEGIN IMMEDIATE")  # someone else writes for a long while meanwhile
        return "run-1"

    monkeypatch.setattr(runs, "start", start)
    try:
        opened = actions.open_repair(**REPAIR)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        db_module.dispose_engines()
    assert opened["flow_run_id"] == "run-1" and opened["number"] in _runs()


def test_a_start_refused_by_a_busy_prefect_is_tried_again_at_once(http_receiver, monkeypatch):
    """A Prefect server on SQLite refuses a write that collides with another (503, nothing
    created): the start tries again itself rather than sleep through Prefect's 2 s backoff."""
    import time
    import uuid

    import prefect.client.base
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class NoBackoff:  # Prefect's client sleeping before a retry fails the start
        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            raise AssertionError(f"Prefect's client backed off {seconds:.1f}s")

    monkeypatch.setattr(prefect.client.base, "time", NoBackoff())
    monkeypatch.setattr(runs, "QUICK_TRIES", (0.01, 0.01, 0.01))
    run_id = str(uuid.uuid4())
    http_receiver.respond_with({"detail": "unexpected"}, status=500)
    http_receiver.respond_once(
        {"id": str(uuid.uuid4()), "name": "repair", "flow_id": str(uuid.uuid4())},
        (422, {"detail": "CSRF protection is disabled."}),
        (503, {"exception_message": "Service Unavailable"}),
        (503, {"exception_message": "Service Unavailable"}),
        (201, {"id": run_id, "flow_id": str(uuid.uuid4()), "name": "R-1"}))
    with temporary_settings({PREFECT_API_URL: f"{http_receiver.url}/api"}):
        assert runs.start("repair", 1, "R-1") == run_id
    posts = [r for r in http_receiver.requests if r.method == "POST"]
    assert [r.path for r in posts] == [posts[0].path] * 3
    assert posts[0].path.endswith("/create_flow_run")
    assert posts[-1].json["parameters"] == {"case_id": 1, "number": "R-1"}
    assert posts[-1].json["name"] == "R-1"
    # The deployment is read once for all three tries.
    assert sum(r.path.endswith("/deployments/name/repair/repair")
               for r in http_receiver.requests) == 1
