"""Run supervision (issue 6, finding 3): a case whose run died or stopped moving is restarted
from its record; a run that keeps failing ends `stuck`, company_cs is told, and `cases list`
and `cases show` say so with the run's state.

The fast tests here stand in for Prefect (what it reports about runs, and the start of a new
run); the served tests at the end kill real processes with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from models.cases import Case, Decision, Step
from models.db import unit_of_work
from propflow import actions, sla, supervise
from propflow.cli import app as cli
from tasks import runs
from tests.flowkit import REPAIR, until
from tests.servekit import Service, state, waiting

runner = CliRunner()


class FakePrefect:
    """What Prefect reports about runs, and the runs propflow starts or cancels."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.states: dict[str, str] = {}  # run id -> state name
        self.beats: dict[str, str] = {}  # run id -> its heartbeat, if a serve executes it
        self.served = True
        self.reads = 0
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.next_state = "Failed"  # what a newly started run becomes
        monkeypatch.setattr(supervise, "_read_runs", self.read)
        monkeypatch.setattr(supervise, "_cancel", self.cancelled.append)
        monkeypatch.setattr(runs, "start", self.start)
        monkeypatch.setattr(runs, "wake", lambda run_id: False)  # it never reads anything

    def read(self, cases: list) -> dict[str, supervise.Seen]:  # type: ignore[type-arg]
        self.reads += 1
        run_ids = [c.flow_run_id for c in cases]
        kinds = {"Suspended": "PAUSED", "Failed": "FAILED", "Crashed": "CRASHED",
                 "Pending": "PENDING", "Running": "RUNNING", "Scheduled": "SCHEDULED"}
        # A state's id is stable for as long as the run stays in it.
        return {r: supervise.Seen(f"{r}:{self.states[r]}", self.states[r],
                                  kinds[self.states[r]], self.served, self.beats.get(r))
                for r in run_ids if r in self.states}

    def start(self, procedure: str, case_id: int, number: str) -> str:
        run_id = str(uuid.uuid4())
        self.started.append(run_id)
        self.states[run_id] = self.next_state
        return run_id


@pytest.fixture
def prefect(monkeypatch: pytest.MonkeyPatch) -> FakePrefect:
    supervise._watch.clear()
    # Passes here follow each other at once; the real-time floor has its own test.
    monkeypatch.setattr(supervise, "LIVENESS_FLOOR", 0.0)
    yield FakePrefect(monkeypatch)
    supervise._watch.clear()


def open_case(prefect: FakePrefect, run_state: str) -> str:
    number = actions.open_repair(start_run=False, **REPAIR)["number"]
    run_id = str(uuid.uuid4())
    prefect.states[run_id] = run_state
    with unit_of_work() as session:
        case = session.scalars(select(Case).where(Case.number == number)).one()
        case.flow_run_id, case.status = run_id, "in_progress"
    return number


def run_of(number: str) -> str:
    with unit_of_work() as session:
        return session.scalars(select(Case.flow_run_id).where(Case.number == number)).one()


def timeline(number: str, action: str) -> list[dict]:
    return [t for t in actions.show_case(number)["timeline"] if t["action"] == action]


def test_a_run_that_keeps_failing_is_restarted_with_backoff_then_marked_stuck(
        demo, clock, prefect):
    number = open_case(prefect, "Failed")
    first = run_of(number)

    # Restarted at once from the record: a new run of the same case.
    assert sla.tick().restarted == 1
    assert prefect.started == [run_of(number)] and run_of(number) != first
    assert prefect.cancelled == []  # a dead run has nothing to cancel
    (restart,) = timeline(number, "run_restarted")
    assert restart["detail"]["run"] == first and restart["detail"]["attempt"] == 1

    # The new run fails too: the next restart waits 1 minute, the one after 2 minutes.
    assert sla.tick().restarted == 0
    clock.advance(timedelta(minutes=1))
    assert sla.tick().restarted == 1
    clock.advance(timedelta(minutes=1))
    assert sla.tick().restarted == 0
    clock.advance(timedelta(minutes=1))
    assert sla.tick().restarted == 1
    assert len(prefect.started) == 3

    # Three restarts, the policy's maximum: the case is stuck and company_cs is told, once.
    assert sla.tick().stuck == 1
    clock.advance(timedelta(hours=1))
    assert sla.tick().stuck == 0 and len(prefect.started) == 3
    shown = actions.show_case(number)
    assert shown["status"] == "stuck" and shown["run_state"] == "Failed"
    told = [n for n in shown["notifications"] if n["event"] == "run_stuck"]
    company_cs = next(p["name"] for p in demo["staff"] if p["role"] == "company_cs")
    assert [n["to"] for n in told] == [company_cs]
    assert number in told[0]["subject"] and "流程停滞" in told[0]["subject"]
    assert timeline(number, "run_stuck")[0]["detail"]["restarts"] == 3

    listed = runner.invoke(cli, ["cases", "list"])
    assert listed.exit_code == 0, listed.output
    row = next(line.split("\t") for line in listed.stdout.splitlines() if number in line)
    assert row[1:3] == ["stuck", "Failed"]
    detail = runner.invoke(cli, ["cases", "show", number])
    assert detail.exit_code == 0, detail.output
    assert "status: stuck" in detail.stdout and "run_state: Failed" in detail.stdout
    assert "流程停滞" in detail.stdout

    # Someone mends it (a retry from the Prefect UI): waiting again, the case is back in hand.
    prefect.states[run_of(number)] = "Suspended"
    sla.tick()
    shown = actions.show_case(number)
    assert shown["status"] == "in_progress" and shown["run_restarts"] == 0
    assert timeline(number, "run_recovered")


def test_a_crashed_run_that_recovers_counts_its_restarts_from_zero(demo, clock, prefect):
    number = open_case(prefect, "Crashed")
    prefect.next_state = "Suspended"
    assert sla.tick().restarted == 1
    sla.tick()
    assert actions.show_case(number)["run_restarts"] == 0
    assert actions.show_case(number)["run_state"] == "Suspended"
    prefect.states[run_of(number)] = "Crashed"  # days later, another crash
    assert sla.tick().restarted == 1  # at once: no backoff left over from the first


def test_a_run_pending_past_the_limit_is_cancelled_and_restarted(demo, clock, prefect):
    number = open_case(prefect, "Pending")
    old = run_of(number)
    prefect.next_state = "Scheduled"
    assert sla.tick().restarted == 0
    assert actions.show_case(number)["run_state"] == "Pending"
    clock.advance(timedelta(minutes=9))
    assert sla.tick().restarted == 0 and sla.tick().restarted == 0  # not yet 10 minutes
    clock.advance(timedelta(minutes=1))
    assert sla.tick().restarted == 1
    assert prefect.cancelled == [old] and run_of(number) != old


def test_one_look_after_a_clock_jump_restarts_nothing(demo, clock, prefect):
    """`propflow clock advance` runs one pass in its own process: a run it sees Running once
    may be working this very second, whatever the training clock says."""
    number = open_case(prefect, "Running")
    sla.tick()
    clock.advance(timedelta(hours=3))
    supervise._watch.clear()  # another process: it has not seen this run before
    assert sla.tick().restarted == 0
    assert sla.tick().restarted == 0
    assert sla.tick().restarted == 1  # the same state on three passes, hours apart
    assert timeline(number, "run_restarted")[0]["detail"]["state"] == "Running"


def test_a_run_starting_up_while_the_clock_jumps_is_left_to_start(demo, clock, prefect,
                                                                  monkeypatch):
    """Training: the clock moved on two hours while a run takes its few seconds to start. It
    is restarted only once it has not moved for 20 real seconds."""
    real = [1000.0]
    monkeypatch.setattr(supervise, "time", SimpleNamespace(monotonic=lambda: real[0]))
    monkeypatch.setattr(supervise, "LIVENESS_FLOOR", 20.0)
    open_case(prefect, "Pending")
    sla.tick()
    clock.advance(timedelta(hours=2))
    for _ in range(5):
        real[0] += 1
        assert sla.tick().restarted == 0
    real[0] += 15
    assert sla.tick().restarted == 1


def test_a_run_whose_service_stopped_beating_is_restarted_within_seconds(demo, clock, prefect,
                                                                        monkeypatch):
    """kill -9 of propflow serve: the runs it executed stay Running or Pending in Prefect and
    nobody marks them crashed. Their beat stands still: after six beats (30 s by default) of
    real time they are restarted, whatever the training clock says, not after stuck_after."""
    real = [1000.0]
    monkeypatch.setattr(supervise, "time", SimpleNamespace(monotonic=lambda: real[0]))
    alive, dead = open_case(prefect, "Running"), open_case(prefect, "Pending")
    prefect.beats[run_of(alive)] = "propflow-serve/host/41/7"
    prefect.beats[run_of(dead)] = "propflow-serve/host/42/3"
    pending = run_of(dead)
    prefect.next_state = "Suspended"
    for beat in range(8, 14):  # 30 s, with the live service's beat moving every 5 s
        sla.tick()
        real[0] += 5
        prefect.beats[run_of(alive)] = f"propflow-serve/host/41/{beat}"
    assert sla.tick().restarted == 1
    assert run_of(alive) != pending and run_of(dead) != pending
    assert prefect.cancelled == [pending]  # so that only the new run works the case
    (restart,) = timeline(dead, "run_restarted")
    assert restart["detail"]["state"] == "Pending" and "heartbeat" in restart["detail"]["reason"]
    assert timeline(alive, "run_restarted") == []
    # A run executed elsewhere (Prefect's Runner, a pool's worker) has no beat: stuck_after
    # alone judges it.
    other = open_case(prefect, "Running")
    for beat in range(14, 24):
        real[0] += 5
        prefect.beats[run_of(alive)] = f"propflow-serve/host/41/{beat}"
        assert sla.tick().restarted == 0
    assert timeline(other, "run_restarted") == []


def test_serve_beats_for_its_runs_until_each_reached_its_wait_even_when_stopping(monkeypatch):
    """A polite stop (SIGTERM) lets the runs executing reach their next wait: they keep
    beating meanwhile, or another replica would take them for abandoned."""
    import threading

    import prefect.client.orchestration

    from propflow.executor import BEAT, Executor

    beats: list[tuple[uuid.UUID, str]] = []

    class Client:
        def __enter__(self) -> Client:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update_flow_run(self, run_id: uuid.UUID, infrastructure_pid: str) -> None:
            beats.append((run_id, infrastructure_pid))

    monkeypatch.setattr(prefect.client.orchestration, "get_client", lambda **_: Client())
    executor = Executor([], [], threads=2, poll_seconds=1, heartbeat_seconds=0.01)
    run = uuid.uuid4()
    executor._taken.add(run)
    executor.stop()
    beating = threading.Thread(target=executor._heartbeat, daemon=True)
    beating.start()
    until("two beats", lambda: len(beats) >= 2)
    assert {r for r, _ in beats} == {run} and len({b for _, b in beats}) == len(beats)
    assert all(b.startswith(BEAT) for _, b in beats)
    with executor._lock:
        executor._taken.discard(run)  # it reached its wait
    beating.join(5)
    assert not beating.is_alive()


def test_a_decision_unread_by_a_waiting_run_past_the_limit_restarts_it(demo, clock, prefect):
    number = open_case(prefect, "Suspended")
    with unit_of_work() as session:
        case = session.scalars(select(Case).where(Case.number == number)).one()
        step = Step(case_id=case.id, key="accept#1", kind="accept", role="technician",
                    status="decided", window_seconds=1800, opened_at=clock.now(),
                    due_at=clock.now() + timedelta(minutes=30), decided_at=clock.now())
        session.add(step)
        session.flush()
        session.add(Decision(step_id=step.id, decided_by=demo["by_role"]["technician"],
                             channel="cli", values={}, created_at=clock.now()))
    for _ in range(3):
        assert sla.tick().restarted == 0  # the SLA clock keeps waking it meanwhile
    clock.advance(timedelta(minutes=10))
    assert sla.tick().restarted == 0 and sla.tick().restarted == 0  # seen unread twice
    assert sla.tick().restarted == 1
    assert timeline(number, "run_restarted")[0]["detail"]["state"] == "Suspended"


def test_healthy_cases_and_runs_started_by_hand_are_left_alone(demo, clock, prefect):
    assert sla.tick().restarted == 0
    assert prefect.reads == 0  # nothing open: Prefect is not asked
    number = open_case(prefect, "Suspended")
    clock.advance(timedelta(days=3))
    for _ in range(4):
        sla.tick()
    assert prefect.reads == 4  # one call per pass for every open case, not one per case
    prefect.served = False  # a run started by hand (tests): nothing to restart it from
    prefect.states[run_of(number)] = "Crashed"
    for _ in range(4):
        assert sla.tick().restarted == 0
    assert prefect.started == [] and actions.show_case(number)["status"] == "in_progress"


# --- served: real processes killed with SIGKILL --------------------------------------------


def flow_processes(service) -> list[int]:  # type: ignore[no-untyped-def]
    """The service's children that run a flow (`python -m prefect.engine`)."""
    found = []
    for pid in service.children():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"prefect.engine" in f.read():
                    found.append(int(pid))
        except FileNotFoundError:
            continue
    return found


def suspended_repair(service: Service) -> tuple[str, str, int]:
    """A repair waiting on accept#1 with its run suspended and no process left."""
    case = actions.open_repair(**REPAIR)
    number, first = case["number"], case["flow_run_id"]
    step_id = until("accept#1", lambda: waiting(number, "accept#1"))
    until("the run to suspend", lambda: state(first) == "Suspended")
    until("the run's process to exit", lambda: service.children() == [])
    return number, first, step_id


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_kill_9_of_a_flow_run_process_restarts_the_case_run(service, demo):
    # A process of its own per run is Prefect's Runner (PROPFLOW_EXECUTOR=processes); the
    # default executor runs them inside the service, whose own kill -9 is the test below.
    service.env["PROPFLOW_EXECUTOR"] = "processes"
    service.start()
    number, first, step_id = suspended_repair(service)

    actions.decide(step_id, demo["by_role"]["technician"], {"note": "马上到"})
    pids = until("the resumed run's process", lambda: flow_processes(service))
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    until("the killed run to crash", lambda: state(first) == "Crashed")

    # Supervision restarts the case's run from its record: the decision is read, and the
    # case moves on to its next step.
    until("complete#1", lambda: waiting(number, "complete#1"))
    shown = actions.show_case(number)
    assert shown["flow_run_id"] != first
    assert [t["detail"]["state"] for t in shown["timeline"]
            if t["action"] == "run_restarted"] == ["Crashed"]
    assert [s["status"] for s in shown["steps"]] == ["decided", "waiting"]
    until("the new run to wait", lambda: state(run_of(number)) == "Suspended")
    until("supervision to see it wait",
          lambda: actions.show_case(number)["run_state"] == "Suspended")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_kill_9_of_the_service_right_after_a_decision_then_restart(service, demo):
    # A beat every 2 s: a run whose beat stood still for 12 s lost its service (30 s with
    # the default 5 s).
    service.env["PROPFLOW_RUN_HEARTBEAT_SECONDS"] = "2"
    service.start()
    number, first, step_id = suspended_repair(service)

    actions.decide(step_id, demo["by_role"]["technician"], {"note": "马上到"})
    # Killed while it executes the resumed run: nobody is left to run it or to mark it
    # crashed, and a service started later only takes Scheduled runs.
    taken = ("Pending", "Running")
    until("the service to take the run", lambda: state(first) in taken)
    service.stop()
    left = state(first)
    service.start()

    # The training clock does not move: the decision is carried out within a minute of the
    # restart, not after supervision.stuck_after (10 minutes).
    until("complete#1, with the case's run waiting for it", lambda: waiting(
        number, "complete#1") and state(run_of(number)) == "Suspended", timeout=60)
    shown = actions.show_case(number)
    assert shown["status"] == "in_progress"
    restarts = [t["detail"] for t in shown["timeline"] if t["action"] == "run_restarted"]
    if left in taken:
        assert shown["flow_run_id"] != first
        assert [r["state"] for r in restarts] == [left], restarts
        assert "heartbeat" in restarts[0]["reason"]
        assert state(first) == "Cancelled"  # the old run no longer counts
    else:  # it reached its next wait in the instant before the kill: nothing to restart
        assert left == "Suspended" and restarts == []

    # And the case goes on to its end.
    technician, csr = demo["by_role"]["technician"], demo["by_role"]["csr"]
    actions.decide(waiting(number, "complete#1"), technician, {"diagnosis": "灯管坏"})
    actions.decide(until("owner_acceptance#1", lambda: waiting(number, "owner_acceptance#1")),
                   csr, {"accepted": "true"})
    actions.decide(until("callback#1", lambda: waiting(number, "callback#1")), csr, {"rating": "5"})
    until("the case to close", lambda: actions.show_case(number)["status"] == "closed")



@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_served_run_that_keeps_failing_ends_stuck_and_company_cs_is_told(
        service, demo, policy_with):
    from core import clock

    path = policy_with(supervision={"stuck_after": "10m", "max_restarts": 2, "backoff": "1m"})
    service.env["PROPFLOW_POLICY"] = str(path)
    service.start()
    case = actions.open_repair(**REPAIR)
    number, first = case["number"], case["flow_run_id"]
    step_id = until("accept#1", lambda: waiting(number, "accept#1"))
    until("the run to suspend", lambda: state(first) == "Suspended")
    # A step no form knows: every replay of this case now fails at the same place.
    with unit_of_work() as session:
        session.get(Step, step_id).kind = "no_such_step"
    runs.wake(first)
    until("the run to fail", lambda: state(first) == "Failed")

    until("the first restart", lambda: len(timeline(number, "run_restarted")) == 1)
    until("the restarted run to fail too",
          lambda: actions.show_case(number)["run_state"] == "Failed")
    assert actions.show_case(number)["status"] == "in_progress"  # backing off for a minute
    clock.advance("1m")
    until("the case to be marked stuck", lambda: actions.show_case(number)["status"] == "stuck")

    shown = actions.show_case(number)
    assert len(timeline(number, "run_restarted")) == 2 and shown["run_state"] == "Failed"
    company_cs = next(p["name"] for p in demo["staff"] if p["role"] == "company_cs")
    assert [n["to"] for n in shown["notifications"] if n["event"] == "run_stuck"] == [company_cs]
    row = next(line.split("\t") for line in runner.invoke(cli, ["cases", "list"]).stdout
               .splitlines() if number in line)
    assert row[1:3] == ["stuck", "Failed"]
    assert "status: stuck" in runner.invoke(cli, ["cases", "show", number]).stdout
