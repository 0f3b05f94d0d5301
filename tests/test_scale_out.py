"""Scale-out, as README "Scaling out" sets it up: on PostgreSQL, a Prefect process work pool
with one worker running the cases from the deployments of prefect.yaml, and two
`propflow serve` replicas with PROPFLOW_SERVE_RUNS=false keeping the SLA clock, run
supervision and delivery. Their clocks race for every start and every lapse: no case is
started twice, no lapse escalated twice, and every case closes.

Prefect's own server is on PostgreSQL too, as README "Scaling out" asks of production. The
session's test server keeps its records in SQLite behind one write lock: under this test's
load (a worker and its flow processes, two replicas, each polling every second) its log
filled with "database is locked" and failed heartbeats, and the runs of closed cases were
still short of Completed when the wait ran out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.clock import advance, set_clock
from models.cases import Case, Escalation, Step
from models.db import unit_of_work
from models.outbox import Notification
from propflow import actions
from tests.conftest import PG_ADMIN, PG_OK
from tests.flowkit import COMPLAINT, REPAIR
from tests.prefectkit import started_server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "propflow"  # prefect.yaml's work pool

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not PG_OK, reason=f"scale-out is shown on PostgreSQL, and it is not "
                                         f"reachable at {PG_ADMIN}"),
    pytest.mark.parametrize("db", ["postgresql"], indirect=True),
]

# What each step is answered with; who answers is whoever the rules let (steps show).
ANSWERS: dict[str, dict[str, Any]] = {
    "accept": {"note": "马上到"},
    "complete": {"diagnosis": "灯管老化", "work_done": "更换"},
    "owner_acceptance": {"accepted": True},
    "callback": {"rating": 5},
    "phone_callback": {"reached": True, "rating": 5},
    "acknowledge": {"note": "已安抚业主"},
    "investigate": {"findings": "保洁排班漏了", "proposed_resolution": "加班清运"},
    "resolve": {"result": "已清运"},
    "feedback": {"accepted": True},
}
RULES = ("assignee", "role", "stand_in", "chain")  # the everyday decider first


class Processes:
    """The worker and the replicas: subprocesses in their own sessions, killed at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, {}  # type: ignore[var-annotated]
        self.phases: list[str] = []  # how long each wait took, printed at the end

    def start(self, name: str, *argv: str, **env: str) -> subprocess.Popen:  # type: ignore[type-arg]
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env | env, stdout=log.open("ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def until(self, what: str, probe: Any, timeout: float = 180) -> Any:
        """Poll another process's progress, twice a second (two cores are shared by all),
        failing at once if one of ours died."""
        began = time.monotonic()
        while time.monotonic() < began + timeout:
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"
            if found := probe():
                self.phases.append(f"{what}: {time.monotonic() - began:.0f} s")
                return found
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}")

    def run(self, *argv: str) -> str:
        done = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def prefect_on_pg(tmp_path: Path) -> Any:
    """`prefect server start`, as scripts/run starts it (propflow.prefect_server), on a free
    port with its records in a new PostgreSQL database; Prefect calls made here go to it for
    the test's duration."""
    import psycopg
    from prefect.settings import PREFECT_API_URL, temporary_settings

    name = f"prefect_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    records = PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0]
    try:
        with (started_server(tmp_path, PREFECT_API_DATABASE_CONNECTION_URL=f"{records}/{name}")
              as url, temporary_settings(updates={PREFECT_API_URL: url})):
            yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cluster(demo, prefect_on_pg, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PROPFLOW_MODE", "training")
    set_clock(None)  # this test, the worker's runs and the replicas share the training clock
    from core.settings import reset_settings

    reset_settings()
    env = dict(os.environ, PREFECT_API_URL=prefect_on_pg, PROPFLOW_HOME=str(tmp_path),
               PROPFLOW_CODE_DIR=str(ROOT), PREFECT_WORKER_QUERY_SECONDS="1",
               PROPFLOW_SLA_INTERVAL_SECONDS="1", PROPFLOW_OUTBOX_INTERVAL_SECONDS="1")
    procs = Processes(env, tmp_path)
    yield procs
    procs.stop()
    for name in [*procs.procs, "prefect-server"]:  # shown by pytest only when it failed
        print(f"---- {name} log (tail) ----")
        print(procs.log(name)[-4000:])


def test_two_replicas_and_a_pool_worker_start_escalate_and_close_every_case_once(
        cluster):
    began = time.monotonic()
    prefect, propflow = str(BIN / "prefect"), str(BIN / "propflow")
    cluster.run(prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    cluster.start("worker", prefect, "worker", "start", "--pool", POOL, "--type", "process")
    for name in ("serve-a", "serve-b"):
        cluster.start(name, propflow, "serve", PROPFLOW_SERVE_RUNS="false")
    cluster.until("both replicas to keep time", lambda: all(
        "SLA clock, supervision and delivery only" in cluster.log(n)
        for n in ("serve-a", "serve-b")))

    # Opened before the deployments exist: Prefect refuses the start, the case is saved,
    # and both replicas' SLA clocks race to start it once prefect.yaml is deployed.
    early = [actions.open_repair(**REPAIR | {"description": f"楼道灯不亮 {i}"})
             for i in range(2)]
    assert not any(c["flow_run_id"] for c in early)
    cluster.run(sys.executable, "-m", "propflow.deploy")  # prefect.yaml, as README says
    late = [actions.open_repair(**REPAIR | {"description": f"电梯按钮失灵 {i}"})
            for i in range(2)] + [actions.open_complaint(**COMPLAINT)]
    numbers = [c["number"] for c in early + late]

    first = {n: ("acknowledge#1" if n == late[-1]["number"] else "accept#1") for n in numbers}
    cluster.until("every case to wait at its first step", lambda: all(
        _waiting(n, key) for n, key in first.items()))
    # Every run suspended before the clock jumps: a run seen in one state across the jump
    # could look stuck to run supervision.
    cluster.until("every run to suspend", lambda: _in_state(numbers, "Suspended"))

    # Past every first window at once; nobody runs a pass here: the replicas race for it.
    advance("31m")
    cluster.until("every lapse to be escalated by the case's run", lambda: all(
        _handled_escalations(n) == 1 for n in numbers))

    lags: list[float] = []  # decision -> the case's next step waiting (or closed), seconds
    cluster.until("every case to close", _decider(numbers, lags), timeout=420)
    runs = cluster.until("every run to complete", lambda: _in_state(numbers, "Completed"),
                         timeout=420)

    # Exactly one run per case, and the case points at it.
    assert Counter(r.name for r in runs) == dict.fromkeys(numbers, 1)
    with unit_of_work() as session:
        recorded = dict(session.execute(select(Case.number, Case.flow_run_id)
                                        .where(Case.number.in_(numbers))).all())
    assert {r.name: str(r.id) for r in runs} == recorded

    # One escalation per lapse (step and level), and one notice of it per recipient.
    with unit_of_work() as session:
        escalations = session.execute(
            select(Case.number, Step.key, Escalation.level, Escalation.claimed_by)
            .join(Step, Escalation.step_id == Step.id).join(Case, Step.case_id == Case.id)
            .where(Case.number.in_(numbers))).all()
        notices = session.execute(
            select(Notification.case_id, Notification.recipient, Notification.channel,
                   func.count()).where(Notification.event == "escalated")
            .group_by(Notification.case_id, Notification.recipient, Notification.channel)
        ).all()
    assert sorted((n, k, lv) for n, k, lv, _ in escalations) == sorted(
        (n, key, 1) for n, key in first.items())
    assert notices and all(count == 1 for *_, count in notices), notices
    assert len({case_id for case_id, *_ in notices}) == len(numbers)

    # The worker ran every case; the replicas ran none.
    worker_log = cluster.log("worker")
    for run in runs:
        assert (run.work_pool_name, run.work_queue_name) == (POOL, "procedures")
        assert f"submitting flow run '{run.id}'" in worker_log
    for name in ("serve-a", "serve-b"):
        assert "submitting flow run" not in cluster.log(name)

    claimed = Counter(by for *_, by in escalations)
    with unit_of_work() as session:
        starters = Counter(session.scalars(select(Case.run_claimed_by).where(
            Case.number.in_([c["number"] for c in early]))))
    lags.sort()
    print(f"scale-out: {len(numbers)} cases closed in {time.monotonic() - began:.0f} s "
          f"({'; '.join(cluster.phases)}); decision -> next step on the worker: median "
          f"{lags[len(lags) // 2]:.1f} s, max {lags[-1]:.1f} s over {len(lags)}; early cases "
          f"started by {dict(starters)}; lapses claimed by {dict(claimed)}")


def _waiting(number: str, key: str) -> bool:
    with unit_of_work() as session:
        return session.scalars(select(Step.id).join(Case).where(
            Case.number == number, Step.key == key, Step.status == "waiting")).first() is not None


def _handled_escalations(number: str) -> int:
    with unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(Escalation)
                              .join(Step, Escalation.step_id == Step.id).join(Case)
                              .where(Case.number == number,
                                     Escalation.handled_at.is_not(None))) or 0


def _decider(numbers: list[str], lags: list[float]) -> Any:
    """Answers every waiting step of every case as soon as it waits; true once all are
    closed. A run still busy when its answer comes gets it from the replicas' SLA clocks."""
    decided: set[int] = set()
    answered: dict[str, float] = {}  # case -> when its last answer was given

    def progress() -> bool:
        open_cases = []
        for number in numbers:
            if actions.show_case(number)["status"] != "closed":
                open_cases.append(number)
            elif number in answered:
                lags.append(time.monotonic() - answered.pop(number))
        for number in open_cases:
            for row in actions.list_steps(case=number):
                if row["id"] in decided:
                    continue
                if number in answered:
                    lags.append(time.monotonic() - answered.pop(number))
                step = actions.show_step(row["id"])
                who = sorted(step["may_decide"], key=lambda d: RULES.index(d["rule"])
                             if d["rule"] in RULES else len(RULES))
                actions.decide(row["id"], who[0]["id"], ANSWERS[row["step"]])
                decided.add(row["id"])
                answered[number] = time.monotonic()
        return not open_cases

    return progress


def _runs_named(numbers: list[str]) -> list:  # type: ignore[type-arg]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        # The sort is given because the server refuses the client's default `"sort": null`.
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=numbers)),
            sort=FlowRunSort.NAME_ASC, limit=200)


def _in_state(numbers: list[str], name: str) -> list | None:  # type: ignore[type-arg]
    """The cases' runs, once there is one for each and every one is in that state."""
    runs = _runs_named(numbers)
    named = {r.name for r in runs}
    return runs if named == set(numbers) and all(
        r.state and r.state.name == name for r in runs) else None
