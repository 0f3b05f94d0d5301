"""What N waiting cases cost the served service: a suspended run should hold no process.

Starts `propflow serve`, measures its process tree (serve + descendants) at idle, opens N repair
cases, waits until every accept#1 step is waiting and every flow run is Suspended, then
measures the tree again. The peak while the runs were starting is sampled every 0.25 s.
`--executor threads` (the default) runs the cases inside the service; `processes` is Prefect's
Runner, a new interpreter per run.

    .venv/bin/python bench/waiting_cases.py [--cases 200] [--executor threads] [--poll S] [--pg]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime

from common import Bench, cpu_seconds, flow_run_states, tree, until

parser = argparse.ArgumentParser()
parser.add_argument("--cases", type=int, default=200)
parser.add_argument("--executor", choices=("threads", "processes"), default="threads",
                    help="PROPFLOW_EXECUTOR of propflow serve")
parser.add_argument("--poll", type=float, default=None,
                    help="PROPFLOW_RUN_POLL_SECONDS / PREFECT_RUNNER_POLL_FREQUENCY; default "
                         "as in production: 0.5 (threads), 2 (processes)")
parser.add_argument("--pg", action="store_true")
parser.add_argument("--prefect-pg", action="store_true",
                    help="the Prefect server on PostgreSQL too (default: its SQLite)")
args = parser.parse_args()
if args.poll is None:
    args.poll = 0.5 if args.executor == "threads" else 2.0


def show(label: str, pid: int) -> None:
    count, rss = tree(pid)
    print(f"{label}: {count} processes, {rss:.0f} MiB RSS")


with Bench("waiting", args.pg) as bench:
    server = bench.prefect_server(args.prefect_pg)
    demo = bench.prepare()
    from sqlalchemy import func, select

    from models.cases import Step
    from models.db import get_engine
    from propflow import actions

    serve = bench.serve(args.poll, args.executor)
    time.sleep(5)  # let the service finish its own start-up (first SLA/delivery passes)
    show("serve tree at idle", serve.pid)
    idle = tree(serve.pid)[0]
    show("Prefect server tree at idle", server.pid)

    # Sample the serve tree in the background for the peak while runs start and suspend.
    peak = {"count": 0, "rss": 0.0}
    sampling = True

    def sample() -> None:
        while sampling:
            count, rss = tree(serve.pid)
            peak["count"], peak["rss"] = max(peak["count"], count), max(peak["rss"], rss)
            time.sleep(0.25)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    # Where the two cores went: the service, the Prefect server, and this process opening.
    cpu0 = {p: cpu_seconds(p) for p in (serve.pid, server.pid)}
    own0 = time.process_time()  # this process alone: the servers are its children
    t0, wall0 = time.monotonic(), datetime.now(UTC)
    runs: set[str] = set()
    for i in range(args.cases):
        case = actions.open_repair(unit=demo["units"][i % len(demo["units"])],
                                   category="public_area", priority="medium", reporter="业主张三",
                                   phone="13800138000", description="楼道灯不亮")
        runs.add(case["flow_run_id"])
        if (i + 1) % 50 == 0 or i + 1 == args.cases:
            print(f"  opened {i + 1}/{args.cases} ({time.monotonic() - t0:.1f}s)", flush=True)
    assert None not in runs, "a case was opened without its run (Prefect unreachable?)"
    opened = time.monotonic() - t0

    def waiting_steps() -> int:
        with get_engine().connect() as conn:
            return conn.scalar(select(func.count()).select_from(Step).where(
                Step.key == "accept#1", Step.status == "waiting")) or 0

    progress = {"next": time.monotonic()}
    times: dict[str, float] = {}
    failed: list[str] = []

    def all_there() -> bool:
        """Every run Suspended on accept#1, or ended in failure (counted, reported below)."""
        n_wait = waiting_steps()
        if n_wait >= args.cases and "waiting" not in times:
            times["waiting"] = time.monotonic() - t0
        states = flow_run_states(runs)
        n_susp = sum(s == "Suspended" for s in states.values())
        failed[:] = [r for r, s in states.items() if s in ("Failed", "Crashed")]
        if time.monotonic() >= progress["next"]:
            progress["next"] += 10
            count, rss = tree(serve.pid)
            print(f"  t+{time.monotonic() - t0:5.0f}s: accept#1 waiting {n_wait}/{args.cases}, "
                  f"Suspended {n_susp}/{args.cases}, failed {len(failed)}, serve tree {count} "
                  f"procs {rss:.0f} MiB", flush=True)
        return n_wait >= n_susp and n_susp + len(failed) == args.cases
    until(f"{args.cases} waiting and Suspended", all_there, timeout=1800, every=1)
    times["suspended"] = time.monotonic() - t0
    # Suspension is reported before the run's process has exited: give them a moment.
    at_suspended = tree(serve.pid)[0]
    settle = time.monotonic()
    until("the serve tree to shrink", lambda: tree(serve.pid)[0] <= idle or
          time.monotonic() - settle > 30, timeout=60, every=0.5)
    sampling = False
    sampler.join()
    cpu = {p: cpu_seconds(p) - c for p, c in cpu0.items()}
    own = time.process_time() - own0

    print("load average (1, 5, 15 min; others' work on this machine counts too): "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"\nresults, {args.cases} cases, executor {args.executor}, poll {args.poll}s, "
          f"{'PostgreSQL' if args.pg else 'SQLite'}:")
    print(f"opened {args.cases} cases (each creates its flow run) in {opened:.1f}s "
          f"({args.cases / opened:.1f}/s)")
    if failed:
        from uuid import UUID

        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            ends = [client.read_flow_run(UUID(r)).state for r in failed]
        why = Counter((state.message or "")[:150] for state in ends)
        at = sorted((state.timestamp - wall0).total_seconds() for state in ends)
        print(f"FAILED: {len(failed)}/{args.cases} runs never reached accept#1 (they failed "
              f"between t+{at[0]:.0f}s and t+{at[-1]:.0f}s; opening ended at t+{opened:.0f}s); "
              f"all the rest were Suspended after {times['suspended']:.1f}s. Reasons:")
        for message, n in why.most_common():
            print(f"  {n}x {message}")
    else:
        print(f"all accept#1 waiting after {times['waiting']:.1f}s; "
              f"all runs Suspended after {times['suspended']:.1f}s")
    print(f"serve tree right when the last run suspended: {at_suspended} processes")
    show(f"serve tree after settling ({time.monotonic() - settle:.1f}s later)", serve.pid)
    print(f"serve tree peak while starting: {peak['count']} processes, "
          f"{peak['rss']:.0f} MiB RSS")
    show("Prefect server tree (reference)", server.pid)
    print(f"CPU seconds during the burst: propflow serve {cpu[serve.pid]:.0f}, Prefect server "
          f"{cpu[server.pid]:.0f}, this process "
          f"(opening) {own:.0f}; {args.cases} cases in {times['suspended']:.0f}s "
          f"of wall time on {os.cpu_count()} cores")
