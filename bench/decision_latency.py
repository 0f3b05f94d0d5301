"""How long a decision takes to move its case on: from `actions.decide(accept#1)` returning to
`complete#1` being written as waiting.

Served (`propflow serve`): the run is suspended, so a decision means resume -> the service's
next poll -> the run executes (`--executor threads`, the default: in the service itself;
`processes`: Prefect's Runner, a new interpreter) -> the flow body replays -> the next step.
In-process (a flow in a thread, `pause_flow_run`): the paused run notices the resume at its
next poll and goes on. Each decision is made at a random moment (0..max poll s after the step
opened), as a person's would be, so neither loop's phase biases the figures.

Then `--deep` cases are taken to their 30th step (the owner refuses every repair, it is
re-inspected and redone: owner_acceptance#r is the case's step 3r) and a decision on the 3rd
step (owner_acceptance#1) is compared with one on the 30th (owner_acceptance#10).

    .venv/bin/python bench/decision_latency.py [--cases 20] [--deep 5] [--executor threads]
                                               [--poll S] [--pause-poll 2.0] [--pg]
                                               [--no-inprocess]
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
parser.add_argument("--deep", type=int, default=5, help="cases taken to their 30th step")
parser.add_argument("--executor", choices=("threads", "processes"), default="threads",
                    help="PROPFLOW_EXECUTOR of propflow serve")
parser.add_argument("--poll", type=float, default=None,
                    help="PROPFLOW_RUN_POLL_SECONDS / PREFECT_RUNNER_POLL_FREQUENCY; default "
                         "as in production: 0.5 (threads), 2 (processes)")
parser.add_argument("--pause-poll", type=float, default=2.0, help="PROPFLOW_PAUSE_POLL_SECONDS")
parser.add_argument("--pg", action="store_true")
parser.add_argument("--prefect-pg", action="store_true",
                    help="the Prefect server on PostgreSQL too (default: its SQLite)")
parser.add_argument("--no-inprocess", action="store_true")
args = parser.parse_args()
if args.poll is None:
    args.poll = 0.5 if args.executor == "threads" else 2.0

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


def decide(number: str, key: str, values: dict[str, str], by: int | None = None) -> None:
    from propflow import actions

    step_id, _, assignee = step_status(number, key)  # type: ignore[misc]
    actions.decide(step_id, by or assignee, values)


def latency(number: str, key: str = "accept#1", values: dict[str, str] | None = None,
            by: int | None = None, then: str = "complete#1") -> tuple[float, datetime, datetime]:
    """Decide `key` (as its assignee unless `by`); seconds until `then` is waiting (DB every
    20 ms)."""
    from propflow import actions

    # A person decides at a random moment, not in step with any poll loop.
    time.sleep(random.uniform(0, max(args.poll, args.pause_poll)))
    step_id, _, assignee = step_status(number, key)  # type: ignore[misc]
    before, d0 = datetime.now(UTC), time.monotonic()
    delivered = actions.decide(step_id, by or assignee, values or {"note": "bench"})["delivered"]
    t0, decided = time.monotonic(), datetime.now(UTC)
    calls.append((t0 - d0, delivered))
    until(f"{then} of {number}", lambda: waiting(number, then), timeout=120, every=0.02)
    return time.monotonic() - t0, before, decided


def task_runs_since(run_id: str, since: datetime) -> int:
    """Task runs the run created after `since`: what its UI shows for that resume."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:  # without a sort: 422 on Prefect 3.8.8
        found = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])),
            sort=TaskRunSort.ID_DESC, limit=200)
    return sum(1 for t in found if t.created and t.created >= since)


def suspended(run_id: str) -> None:
    until("the run to suspend", lambda: flow_run_states({run_id})[run_id] == "Suspended",
          timeout=300, every=0.2)


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
    bench.prefect_server(args.prefect_pg)
    demo = bench.prepare()
    from propflow import actions
    from tasks import runs

    real_wake, runs.wake = runs.wake, timed_wake

    # --- served: open every case, let all suspend on accept#1, then decide one at a time.
    serve = bench.serve(args.poll, args.executor)
    cases = [actions.open_repair(unit=demo["units"][i % len(demo["units"])], **CASE)
             for i in range(args.cases)]
    run_ids = {c["flow_run_id"] for c in cases}
    until("every accept#1 waiting and every run Suspended", lambda: all(
        waiting(c["number"], "accept#1") for c in cases) and set(
        flow_run_states(run_ids).values()) == {"Suspended"}, timeout=600, every=1)
    served, parts, resumed_at = [], [], []
    for i, case in enumerate(cases, 1):
        took, before, decided = latency(case["number"])
        served.append(took)
        resumed_at.append(decided)
        parts.append(phases(case["flow_run_id"], before, decided, took))
        if i % 5 == 0 or i == len(cases):
            print(f"  served: {i}/{len(cases)} decided, last {served[-1]:.2f}s", flush=True)
        # Let the run suspend again before the next decision, so each is measured alone.
        until("the run to suspend", lambda run_id=case["flow_run_id"]: flow_run_states(
              {run_id})[run_id] == "Suspended", timeout=120, every=0.2)
    print("load average (1, 5, 15 min; others' work on this machine counts too): "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"served (suspend/replay), executor {args.executor}, poll {args.poll}s, "
          f"{'PostgreSQL' if args.pg else 'SQLite'}: {stats(served)}")
    took = [c for c, _ in calls]
    print(f"  decide() itself: median {statistics.median(took):.2f}s, max {max(took):.2f}s, "
          f"of which the wake median {statistics.median(wakes):.2f}s, max {max(wakes):.2f}s; "
          f"woke the run {sum(d for _, d in calls)}/{len(calls)} times")
    pickup, start, replay = (statistics.median(p) for p in zip(*parts, strict=True))
    print(f"  medians: pick-up {pickup:.2f}s + start (Pending -> Running) {start:.2f}s + "
          f"replay to complete#1 {replay:.2f}s")
    time.sleep(3)  # task runs reach the server as events, a moment later
    shown = [task_runs_since(c["flow_run_id"], at) for c, at in zip(cases, resumed_at,
                                                                    strict=True)]
    print(f"  task runs a resume created (the Prefect UI's list for it): median "
          f"{statistics.median(shown):g}, max {max(shown)}")

    # --- the 3rd step against the 30th: cases driven through ten refused repairs.
    if args.deep:
        from propflow import actions

        by = demo["by_role"]
        refuse = {"accepted": "false", "reason": "仍然不亮"}
        deep = [actions.open_repair(unit=demo["units"][i % len(demo["units"])], **CASE)
                for i in range(args.deep)]
        for case in deep:
            until("accept#1", lambda n=case["number"]: waiting(n, "accept#1"), timeout=600)
            suspended(case["flow_run_id"])
        at_step: dict[int, list[float]] = {3: [], 30: []}
        step_parts: dict[int, list[tuple[float, float, float]]] = {3: [], 30: []}
        t_deep = time.monotonic()

        def advance(key: str, values: dict[str, str], then: str, who: int | None = None,
                    measure: int | None = None) -> None:
            """Every deep case decides `key`; measured one at a time, else all at once."""
            if measure:
                for case in deep:
                    took, before, decided = latency(case["number"], key, values, who, then)
                    at_step[measure].append(took)
                    step_parts[measure].append(phases(case["flow_run_id"], before, decided,
                                                      took))
                    suspended(case["flow_run_id"])
                return
            for case in deep:
                decide(case["number"], key, values, who)
            for case in deep:
                until(then, lambda n=case["number"]: waiting(n, then), timeout=600)
                suspended(case["flow_run_id"])

        advance("accept#1", {"note": "bench"}, "complete#1")
        for r in range(1, 11):
            advance(f"complete#{r}", {"diagnosis": "灯管坏"}, f"owner_acceptance#{r}")
            advance(f"owner_acceptance#{r}", refuse, f"reinspection#{r}", by["csr"],
                    measure=3 if r == 1 else 30 if r == 10 else None)
            if r < 10:
                advance(f"reinspection#{r}", {"finding": "需返工", "redo": "true"},
                        f"complete#{r + 1}", by["tech_supervisor"])
        third, thirtieth = statistics.median(at_step[3]), statistics.median(at_step[30])
        print(f"deep cases ({args.deep}, driven in {time.monotonic() - t_deep:.0f}s): decision "
              f"on the 3rd step {stats(at_step[3])}")
        print(f"  on the 30th step {stats(at_step[30])}; 30th/3rd medians "
              f"{thirtieth / third:.2f} ({(thirtieth / third - 1) * 100:+.0f} %)")
        for n in (3, 30):  # the replay is the part a longer history could make slower
            pickup, start, replay = (statistics.median(p) for p in zip(*step_parts[n],
                                                                       strict=True))
            print(f"  step {n} medians: pick-up {pickup:.2f}s + start {start:.2f}s + replay "
                  f"to the next step {replay:.2f}s")
        time.sleep(3)
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.sorting import TaskRunSort

        with get_client(sync_client=True) as client:
            total = [len(client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(c["flow_run_id"])])), sort=TaskRunSort.ID_DESC,
                limit=200)) for c in deep]
        print(f"  task runs per deep case after 30 steps (31 executions): median "
              f"{statistics.median(total):g} (200 is the most this counts)")
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
