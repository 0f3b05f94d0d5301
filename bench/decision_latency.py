"""How long a decision takes to move its case on: from `app.decide(accept#1)` returning to
`complete#1` being written as waiting.

Served (`propflow serve`): the run is suspended, so a decision means resume -> the runner's
next poll -> a new process -> the flow body replays -> the next step. In-process (a flow in a
thread, `pause_flow_run`): the paused run notices the resume at its next poll and goes on.
Each decision is made at a random moment (0..max poll s after the step opened), as a
person's would be, so neither loop's phase biases the figures.

    .venv/bin/python bench/decision_latency.py [--cases 20] [--poll 2] [--pause-poll 2.0]
                                               [--pg] [--no-inprocess]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import time
from datetime import UTC, datetime
from uuid import UUID

from common import Bench, flow_run_states, stats, step_status, until, waiting

parser = argparse.ArgumentParser()
parser.add_argument("--cases", type=int, default=20)
parser.add_argument("--poll", type=float, default=2.0, help="PREFECT_RUNNER_POLL_FREQUENCY")
parser.add_argument("--pause-poll", type=float, default=2.0, help="PROPFLOW_PAUSE_POLL_SECONDS")
parser.add_argument("--pg", action="store_true")
parser.add_argument("--no-inprocess", action="store_true")
args = parser.parse_args()

CASE = dict(category="public_area", priority="medium", reporter="业主张三",
            phone="13800138000", description="楼道灯不亮")

calls: list[tuple[float, bool]] = []  # how long decide() itself took, and whether it woke
wakes: list[float] = []  # of which the wake (resume_flow_run), timed by wrapping runs.wake


def timed_wake(run_id: str | None) -> bool:
    w0 = time.monotonic()
    try:
        return real_wake(run_id)
    finally:
        wakes.append(time.monotonic() - w0)


def latency(number: str) -> tuple[float, datetime, datetime]:
    """Decide accept#1 as its assignee; seconds until complete#1 is waiting (DB every 20 ms)."""
    from propflow import app

    # A person decides at a random moment, not in step with any poll loop.
    time.sleep(random.uniform(0, max(args.poll, args.pause_poll)))
    step_id, _, assignee = step_status(number, "accept#1")  # type: ignore[misc]
    before, d0 = datetime.now(UTC), time.monotonic()
    delivered = app.decide(step_id, assignee, {"note": "bench"})["delivered"]
    t0, decided = time.monotonic(), datetime.now(UTC)
    calls.append((t0 - d0, delivered))
    until(f"complete#1 of {number}", lambda: waiting(number, "complete#1"), timeout=120,
          every=0.02)
    return time.monotonic() - t0, before, decided


def phases(run_id: str, before: datetime, decided: datetime,
           total: float) -> tuple[float, float, float]:
    """A served decision's time from the run's state history: until the runner picked the
    resumed run up (Pending; may precede decide() returning), until its new process ran the
    flow (Running), then the replay up to complete#1."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = [s for s in client.read_flow_run_states(UUID(run_id)) if s.timestamp >= before]
    pending = next(s.timestamp for s in states if s.type.value == "PENDING")
    running = next(s.timestamp for s in states if s.type.value == "RUNNING")
    return ((pending - decided).total_seconds(), (running - pending).total_seconds(),
            total - (running - decided).total_seconds())


with Bench("decision", args.pg) as bench:
    os.environ["PROPFLOW_PAUSE_POLL_SECONDS"] = str(args.pause_poll)
    bench.prefect_server()
    demo = bench.prepare()
    from propflow import app, runs

    real_wake, runs.wake = runs.wake, timed_wake

    # --- served: open every case, let all suspend on accept#1, then decide one at a time.
    serve = bench.serve(args.poll)
    cases = [app.open_repair(unit=demo["units"][i % len(demo["units"])], **CASE)
             for i in range(args.cases)]
    run_ids = {c["flow_run_id"] for c in cases}
    until("every accept#1 waiting and every run Suspended", lambda: all(
        waiting(c["number"], "accept#1") for c in cases) and set(
        flow_run_states(run_ids).values()) == {"Suspended"}, timeout=600, every=1)
    served, parts = [], []
    for i, case in enumerate(cases, 1):
        took, before, decided = latency(case["number"])
        served.append(took)
        parts.append(phases(case["flow_run_id"], before, decided, took))
        if i % 5 == 0 or i == len(cases):
            print(f"  served: {i}/{len(cases)} decided, last {served[-1]:.2f}s", flush=True)
        # Let the run suspend again before the next decision, so each is measured alone.
        until("the run to suspend", lambda run_id=case["flow_run_id"]: flow_run_states(
              {run_id})[run_id] == "Suspended", timeout=120, every=0.2)
    print(f"served (suspend/replay), PREFECT_RUNNER_POLL_FREQUENCY={args.poll}s: "
          f"{stats(served)}")
    took = [c for c, _ in calls]
    print(f"  decide() itself: median {statistics.median(took):.2f}s, max {max(took):.2f}s, "
          f"of which the wake median {statistics.median(wakes):.2f}s, max {max(wakes):.2f}s; "
          f"woke the run {sum(d for _, d in calls)}/{len(calls)} times")
    pickup, start, replay = (statistics.median(p) for p in zip(*parts, strict=True))
    print(f"  medians: runner pick-up {pickup:.2f}s + process start {start:.2f}s + "
          f"replay to complete#1 {replay:.2f}s")
    os.killpg(serve.pid, signal.SIGKILL)  # in-process runs below need no service
    serve.wait(10)

    if args.no_inprocess:
        print("in-process: skipped (--no-inprocess)")
    else:
        # --- in-process: tests/flowkit.RepairRun runs the flow in a thread; it pauses in place.
        from tests.flowkit import RepairRun

        paused_runs, inproc = [], []
        for i in range(args.cases):
            run = RepairRun(demo, None, unit=demo["units"][i % len(demo["units"])])  # type: ignore[arg-type]
            run.step("accept#1")  # the step is waiting and the run is Paused
            inproc.append(latency(run.number)[0])
            paused_runs.append(run)  # left paused on complete#1; daemon threads end with us
            if (i + 1) % 5 == 0 or i + 1 == args.cases:
                print(f"  in-process: {i + 1}/{args.cases} decided, last {inproc[-1]:.2f}s",
                      flush=True)
        print(f"in-process (pause_flow_run), PROPFLOW_PAUSE_POLL_SECONDS={args.pause_poll}s: "
              f"{stats(inproc)}")

# The in-process runs are still paused in daemon threads; a normal interpreter exit would
# have them (and Prefect's log/event workers) talk to the server we have just stopped.
sys.stdout.flush()
os._exit(0)
