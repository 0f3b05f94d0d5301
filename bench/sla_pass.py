"""One SLA clock pass over many waiting steps: steady state, warnings, lapses.

Bulk-inserts N repair cases, each with a waiting accept#1 step (no flow run, so no wake is
attempted), plus P more waiting steps not due for a week, then times
`propflow.sla.tick(start_pending=False)` at four instants of an injected ManualClock: nothing
due (over N + P waiting steps); every step at 80 % (N warnings); every step past due (N lapses,
each an escalation + audit row); nothing due again. Prints the query plans of the pass's two
questions (due by now, warned by now) and the three figures the issue's targets name.
No Prefect involved.

    .venv/bin/python bench/sla_pass.py [--steps 10000] [--pending 100000] [--pg] [--profile]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from common import Bench

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=10000)
parser.add_argument("--pending", type=int, default=100000,
                    help="waiting steps besides, due a week later: what a steady pass skips")
parser.add_argument("--pg", action="store_true")
parser.add_argument("--profile", action="store_true",
                    help="where each pass spent its time: cProfile, 25 functions by cumulative "
                         "time, 20 by their own")
args = parser.parse_args()
N, P = args.steps, args.pending
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Tuesday, in hours
WINDOW = timedelta(minutes=30)  # medium accept: 30 min of business time, warning at 80 %


def rss(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


with Bench("sla", args.pg, mode="normal") as bench:
    demo = bench.prepare()
    from sqlalchemy import create_engine, event, func, select, text

    from core import clock
    from models.cases import Case, Escalation, Step
    from models.db import get_engine
    from models.org import Community, Staff, StaffRole, Unit
    from models.outbox import AuditEvent, Notification
    from propflow import sla

    engine = get_engine()
    with engine.begin() as conn:
        community = conn.scalar(select(Community.id))
        units = list(conn.scalars(select(Unit.id).order_by(Unit.id)))
        techs = list(conn.scalars(select(Staff.id).join(StaffRole, StaffRole.staff_id == Staff.id)
                                  .where(StaffRole.role == "technician")))

    # Opened over the 5 minutes before T0, so every warning falls in (T0, T0+24m] and every
    # due time in (T0+25m, T0+30m]: one instant sees them all warned, another all due. The
    # P others (numbers BN-N and up) are due a week after T0, their warnings five days after.
    t = time.monotonic()
    for start in range(0, N + P, 2000):
        idx = range(start, min(N + P, start + 2000))
        opened = {i: T0 - timedelta(seconds=300 * i / N) if i < N else T0 for i in idx}
        window = {i: WINDOW if i < N else timedelta(days=7) for i in idx}
        with engine.begin() as conn:
            conn.execute(Case.__table__.insert(), [dict(
                number=f"BN-{i:06d}", procedure="repair", community_id=community,
                unit_id=units[i % len(units)], status="in_progress", category="public_area",
                priority="medium", paid=False, channel="phone", reporter_name="业主张三",
                reporter_phone="13800138000", description="楼道灯不亮",
                assignee_id=techs[i % len(techs)], data={}, flow_run_id=None,
                created_at=opened[i]) for i in idx])
            ids = dict(conn.execute(select(Case.number, Case.id).where(
                Case.number.in_([f"BN-{i:06d}" for i in idx]))).all())
            conn.execute(Step.__table__.insert(), [dict(
                case_id=ids[f"BN-{i:06d}"], key="accept#1", kind="accept", role="technician",
                assignee_id=techs[i % len(techs)], status="waiting", calendar="business",
                window_seconds=int(window[i].total_seconds()), on_lapse="escalate",
                opened_at=opened[i], due_at=opened[i] + window[i],
                warn_at=opened[i] + window[i] * 0.8,
                level=0, breached=False, decided_at=None, context={}) for i in idx])
        if (idx[-1] + 1) % 20000 == 0 or idx[-1] + 1 == N + P:
            print(f"  inserted {idx[-1] + 1}/{N + P} cases+steps ({time.monotonic() - t:.1f}s)",
                  flush=True)
    if args.pg:  # what autovacuum does after a bulk load: the planner sees the new rows
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))

    # Count statements by their first words: a per-step (N+1) pattern shows as counts ~ N.
    statements, kinds, spent = [0], Counter(), Counter()  # spent: seconds in the database

    # The pass's two SELECTs of steps as first asked (nothing due, over every waiting step),
    # for EXPLAIN at the end.
    questions: dict[str, tuple[str, object]] = {}

    def count_sql(conn, cursor, sql: str, params: object, *_: object) -> None:  # type: ignore[no-untyped-def]
        statements[0] += 1
        kinds[" ".join(sql.split()[:4])[:60]] += 1
        if sql.startswith("SELECT steps.id \nFROM steps \nWHERE"):
            question = "warned by now" if "warn_at" in sql else "due by now"
            questions.setdefault(question, (sql, params))
    event.listen(engine, "before_cursor_execute", count_sql)

    def start_sql(conn, *_: object) -> None:  # type: ignore[no-untyped-def]
        conn.info["sql_t0"] = time.monotonic()

    def end_sql(conn, cursor, sql: str, *_: object) -> None:  # type: ignore[no-untyped-def]
        spent[" ".join(sql.split()[:4])[:60]] += time.monotonic() - conn.info.pop("sql_t0")
    event.listen(engine, "before_cursor_execute", start_sql)
    event.listen(engine, "after_cursor_execute", end_sql)
    # Another writer, as a decision would be: a no-op update, on its own engine, of the step
    # due first (the lapse pass claims it first). How long is it held up?
    probe = create_engine(bench.url, connect_args={} if args.pg else {"timeout": 120})
    with probe.connect() as conn:
        first = conn.scalar(select(Step.id).join(Case).where(Case.number == f"BN-{N - 1:06d}"))
    manual = clock.ManualClock(T0)
    clock.set_clock(manual)
    # `propflow serve` read its policy when it started; a first read here would load the
    # policy's pydantic models inside the first timed pass (0.3 s on 2026-12-01).
    from core.policy import get_policy
    get_policy()
    import gc
    gc.freeze()  # as `propflow serve` does once started (propflow/service.py)

    def timed(label: str, at: datetime) -> float:
        if at > manual.now():
            manual.advance(at - manual.now())
        Path("/proc/self/clear_refs").write_text("5")  # reset this process's peak RSS (VmHWM)
        before_rss, before_sql, done = rss("VmRSS"), statements[0], threading.Event()
        kinds.clear()
        spent.clear()
        stall = [0.0]

        def progress() -> None:  # a long pass prints where it is every 10 s
            while not done.wait(10):
                print(f"    ... {time.monotonic() - t0:.0f}s, "
                      f"{statements[0] - before_sql} SQL statements so far", flush=True)

        def writer() -> None:
            while not done.wait(0.2):
                w0 = time.monotonic()
                with probe.begin() as conn:
                    conn.execute(text("UPDATE steps SET breached = breached WHERE id = :id"),
                                 {"id": first})
                stall[0] = max(stall[0], time.monotonic() - w0)
        threads = [threading.Thread(target=f, daemon=True) for f in (progress, writer)]
        for thread in threads:
            thread.start()
        t0, cpu0 = time.monotonic(), time.process_time()
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            result = profile.runcall(sla.tick, start_pending=False)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
            pstats.Stats(profile).sort_stats("tottime").print_stats(20)
        else:
            result = sla.tick(start_pending=False)
        took, cpu = time.monotonic() - t0, time.process_time() - cpu0
        done.set()
        threads[1].join()
        sql = statements[0] - before_sql
        work = result.lapsed + result.warned
        rate = f"{work / took:,.0f} steps/s, " if work else ""
        per = f" ({sql / work:.1f} per step)" if work else ""
        # CPU time beside wall time: on a shared machine the wall clock counts the others.
        print(f"{label}: {took:.3f}s (this process's CPU {cpu:.3f}s), "
              f"lapsed={result.lapsed} warned={result.warned}, {rate}"
              f"{sql} SQL statements{per}, peak RSS {rss('VmHWM'):.0f} MiB "
              f"(+{rss('VmHWM') - before_rss:.0f} over {before_rss:.0f}), a write to the "
              f"earliest-due step waited up to {stall[0]:.2f}s", flush=True)
        if work:
            print("      most frequent: " + "; ".join(f"{n}x {k}" for k, n in kinds.most_common(5)))
            print(f"      in the database {sum(spent.values()):.2f}s, most: " + "; ".join(
                f"{t:.2f}s {k}" for k, t in spent.most_common(4)))
        return took

    print(f"\n{N} steps to warn and lapse among {N + P} waiting steps, "
          f"{'PostgreSQL' if args.pg else 'SQLite'}:")
    figures = {
        "nothing due": timed("steady pass, nothing due   ", T0),
        "warnings": timed("warnings pass (80 %)       ", T0 + WINDOW * 0.8),
        "lapses": timed("lapse pass (all past due)  ", T0 + WINDOW + timedelta(minutes=1)),
        "nothing due after": timed("steady pass after lapses   ",
                                   T0 + WINDOW + timedelta(minutes=1)),
    }
    with engine.connect() as conn:
        for question, (sql, params) in sorted(questions.items()):
            explain = "EXPLAIN " if args.pg else "EXPLAIN QUERY PLAN "
            rows = conn.exec_driver_sql(explain + sql, params).all()  # type: ignore[arg-type]
            plan = [row[-1] for row in rows]
            print(f"plan of '{question}': " + " | ".join(str(p).strip() for p in plan))
    with engine.connect() as conn:
        count = lambda table, *where: conn.scalar(  # noqa: E731
            select(func.count()).select_from(table).where(*where))
        print(f"rows: escalations={count(Escalation)}, audit lapsed="
              f"{count(AuditEvent, AuditEvent.action == 'lapsed')}, audit warned="
              f"{count(AuditEvent, AuditEvent.action == 'warned')}, warning notifications="
              f"{count(Notification, Notification.event == 'warning')}, steps at level 1="
              f"{count(Step, Step.level == 1)}")
    clock.set_clock(None)
    db = "PostgreSQL" if args.pg else "SQLite"
    print(f"\nSLA pass on {db}: lapses {figures['lapses']:.2f}s for {N} due steps, warnings "
          f"{figures['warnings']:.2f}s for {N}, nothing due {figures['nothing due']:.3f}s over "
          f"{N + P} waiting steps ({figures['nothing due after']:.3f}s after the lapses)")
