"""The monthly report on many cases: the figures, the HTML (charts) and the XLSX, timed apart.

Bulk-inserts N cases (default 100,000) into one community over twelve months, SHARE of them
(default a half) in the reported month, 2026-11 — repairs with their steps (dispatch, accept,
completion, owner acceptance, re-inspection and a second completion for some, the callback
with its rating), complaints with theirs, inspection rounds with three checkpoints each —
with escalations of some steps, over 20,000 units. Then times models.kpi.figures, the HTML
(models.kpi_files.html) and the XLSX (kpi_files.xlsx) three times each, printing the median,
and prints the month's figures. No Prefect involved. The issue's target: ≤ 5 s on 100,000.

    .venv/bin/python bench/monthly_report.py [--cases 100000] [--share 0.5] [--pg]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from common import Bench

parser = argparse.ArgumentParser()
parser.add_argument("--cases", type=int, default=100_000)
parser.add_argument("--share", type=float, default=0.5, help="of them in the reported month")
parser.add_argument("--units", type=int, default=20000)
parser.add_argument("--pg", action="store_true")
parser.add_argument("--explain", action="store_true", help="the slowest statements' plans")
args = parser.parse_args()
SH = ZoneInfo("Asia/Shanghai")
MONTH_START = datetime(2026, 11, 1, tzinfo=SH)
HISTORY_START = datetime(2025, 12, 1, tzinfo=SH)
H = timedelta(hours=1)


class Rows:
    """One batch's rows; step ids from `first` on (at most 8 steps a case)."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.cases: list[dict] = []
        self.steps: list[dict] = []
        self.decisions: list[dict] = []
        self.escalations: list[dict] = []

    def step(self, cid: int, key: str, opened: datetime, due: datetime,
             decided: datetime | None, values: dict | None, role: str, level: int) -> None:
        sid = self.first + len(self.steps)
        self.steps.append(dict(
            id=sid, case_id=cid, key=key, kind=key.split("#")[0], role=role,
            status="decided" if decided else "waiting", calendar="24x7",
            window_seconds=int((due - opened).total_seconds()), on_lapse="escalate",
            opened_at=opened, due_at=due, warn_at=None, level=level,
            breached=bool(decided and decided > due) or level > 0,
            decided_at=decided, context={}))
        if decided:
            self.decisions.append(dict(step_id=sid, channel="cli", values=values or {},
                                       comment="", override=False, on_behalf_of_owner=False,
                                       created_at=decided))
        for lv in range(1, level + 1):
            self.escalations.append(dict(step_id=sid, level=lv, to_role="cs_supervisor",
                                         lapsed_at=due + (lv - 1) * H, claimed_at=due,
                                         claimed_by="bench"))


def timed(label: str, fn, runs: int = 3):  # type: ignore[no-untyped-def]
    took, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        took.append(time.perf_counter() - t0)
    print(f"{label:<28} median {statistics.median(took):6.2f} s   "
          f"({', '.join(f'{t:.2f}' for t in took)})", flush=True)
    return result


with Bench("monthly", args.pg, mode="normal") as bench:
    bench.prepare()
    from sqlalchemy import event, func, select, text

    from models import kpi, kpi_files
    from models.cases import Case, Decision, Escalation, Step
    from models.db import get_engine, unit_of_work
    from models.org import Building, Community, Unit
    from propflow import report

    rng = random.Random(10)
    engine = get_engine()
    t = time.monotonic()
    with engine.begin() as conn:
        community = conn.scalar(select(Community.id).where(Community.code == "YGHY"))
        building = conn.scalar(select(Building.id).where(Building.community_id == community))
        conn.execute(Unit.__table__.insert(), [dict(
            community_id=community, building_id=building, code=f"B-{i:05d}")
            for i in range(args.units)])
        units = list(conn.scalars(select(Unit.id).where(Unit.community_id == community)))
        next_case = (conn.scalar(select(func.max(Case.id))) or 0) + 1
        next_step = (conn.scalar(select(func.max(Step.id))) or 0) + 1

    repair_categories = ["water_electric", "equipment", "public_area", "in_unit", "civil"]
    complaint_categories = ["environment", "noise", "parking", "service", "fees", "security"]
    ratings = [1, 2, 3, 4, 5]
    rating_weights = [2, 3, 10, 35, 50]
    month_seconds = (MONTH_START.replace(month=12) - MONTH_START).total_seconds()
    history_seconds = (MONTH_START - HISTORY_START).total_seconds()
    batch = 5000
    for start in range(0, args.cases, batch):
        rows = Rows(next_step + start * 8)
        cases = rows.cases
        for i in range(start, min(args.cases, start + batch)):
            cid = next_case + i
            in_month = rng.random() < args.share
            created = (MONTH_START + timedelta(seconds=rng.random() * month_seconds)
                       if in_month else
                       HISTORY_START + timedelta(seconds=rng.random() * history_seconds))
            kind = rng.random()
            procedure = "repair" if kind < 0.7 else "complaint" if kind < 0.9 else "inspection"
            category = (rng.choice(repair_categories) if procedure == "repair" else
                        rng.choice(complaint_categories) if procedure == "complaint"
                        else "public_facilities")
            done = rng.random() < 0.85
            took = H * rng.uniform(1, 72)
            cases.append(dict(
                id=cid, number=f"BM-{i:07d}", procedure=procedure, community_id=community,
                unit_id=rng.choice(units), status="closed" if done else "in_progress",
                category=category, priority="medium", paid=False, channel="phone",
                reporter_name="业主", reporter_phone=f"139{i:08d}", description="bench",
                data={}, created_at=created, closed_at=created + took + 10 * H if done else None,
                outcome=("done" if procedure == "repair" else "resolved") if done else None))

            def step(key: str, opened: datetime, due: datetime, decided: datetime | None,
                     values: dict | None = None, role: str = "technician", level: int = 0,
                     *, rows: Rows = rows, cid: int = cid) -> None:
                rows.step(cid, key, opened, due, decided, values, role, level)

            if procedure == "repair":
                late = rng.random() < 0.1
                step("accept#1", created, created + H, created + H * (1.5 if late else 0.5),
                     level=(2 if rng.random() < 0.3 else 1) if late else 0)
                if not done:
                    continue
                refused, redo = rng.random() < 0.08, rng.random() < 0.5
                first = created + (took / 2 if refused and redo else took)
                step("complete#1", created, created + 48 * H, first)
                step("owner_acceptance#1", first, first + 24 * H, first + H,
                     {"accepted": not refused}, role="owner")
                if refused:
                    step("reinspection#1", first + H, first + 49 * H, first + 2 * H,
                         {"redo": redo}, role="tech_supervisor")
                    if redo:
                        step("complete#2", first + 2 * H, first + 48 * H, created + took)
                step("callback#1", created + took, created + took + 24 * H,
                     created + took + 5 * H, {"reached": True, "rating": rng.choices(
                         ratings, rating_weights)[0]}, role="owner")
            elif procedure == "complaint":
                step("acknowledge#1", created, created + H / 2,
                     created + H * rng.choice([0.2, 0.4, 0.8]), role="csr",
                     level=1 if rng.random() < 0.05 else 0)
                if done:
                    step("callback#1", created + took, created + took + 24 * H,
                         created + took + 2 * H, {"reached": True, "rating": rng.choices(
                             ratings, rating_weights)[0]}, role="owner")
            else:
                for n in range(1, 4):
                    step(f"checkpoint#{n}", created, created + 8 * H,
                         created + H * rng.choice([1, 2, 3, 9]), role="steward")
        with engine.begin() as conn:
            conn.execute(Case.__table__.insert(), cases)
            conn.execute(Step.__table__.insert(), rows.steps)
            conn.execute(Decision.__table__.insert(), rows.decisions)
            if rows.escalations:
                conn.execute(Escalation.__table__.insert(), rows.escalations)
        if (start + batch) % 20000 == 0 or start + batch >= args.cases:
            print(f"  inserted {min(args.cases, start + batch)}/{args.cases} cases "
                  f"({time.monotonic() - t:.1f}s)", flush=True)
    with engine.begin() as conn:
        if args.pg:  # what autovacuum does after a bulk load: the planner sees the new rows
            conn.execute(text("ANALYZE"))
            conn.execute(text("SELECT setval('cases_id_seq', (SELECT max(id) FROM cases))"))
            conn.execute(text("SELECT setval('steps_id_seq', (SELECT max(id) FROM steps))"))
        else:
            conn.execute(text("ANALYZE"))
        totals = {name: conn.scalar(select(func.count()).select_from(table)) for name, table in
                  (("cases", Case), ("steps", Step), ("decisions", Decision),
                   ("escalations", Escalation))}
    print("rows: " + ", ".join(f"{k} {v}" for k, v in totals.items()))

    month = kpi.Month(2026, 11)
    now = datetime(2026, 12, 1, 8, 0, tzinfo=SH)

    def figures() -> kpi.Figures:
        with unit_of_work(write=False) as session:
            place = kpi.community_of(session, "YGHY")
            return kpi.figures(session, place, month, now=now)

    def every_community() -> kpi.Figures:
        with unit_of_work(write=False) as session:
            return kpi.figures(session, None, month, now=now)

    # Where one report's time goes: each statement's, slowest first.
    spent: list[tuple[float, str, object]] = []

    def start_sql(conn, *_: object) -> None:  # type: ignore[no-untyped-def]
        conn.info["sql_t0"] = time.perf_counter()

    def end_sql(conn, cursor, sql: str, params: object, *_: object) -> None:  # type: ignore[no-untyped-def]
        spent.append((time.perf_counter() - conn.info.pop("sql_t0"), sql, params))
    event.listen(engine, "before_cursor_execute", start_sql)
    event.listen(engine, "after_cursor_execute", end_sql)
    figures()
    event.remove(engine, "before_cursor_execute", start_sql)
    event.remove(engine, "after_cursor_execute", end_sql)
    print(f"one report: {len(spent)} statements, {sum(t for t, *_ in spent):.2f} s in the "
          "database; the slowest:")
    for took, sql, params in sorted(spent, key=lambda x: -x[0])[:6]:
        print(f"  {took:5.2f} s  {' '.join(sql.split())[:150]}")
        if args.explain:
            with engine.connect() as conn:
                plan = conn.exec_driver_sql(("EXPLAIN " if args.pg else "EXPLAIN QUERY PLAN ")
                                            + sql, params).all()
            for row in plan:
                print("          " + " | ".join(str(x) for x in row)[:140])
    found = timed("figures (YGHY, 2026-11)", figures)
    timed("figures (every community)", every_community)
    page = timed("HTML with 6 SVG charts", lambda: kpi_files.html(found))
    book = timed("XLSX", lambda: kpi_files.xlsx(found))
    print(f"HTML {len(page) / 1024:.0f} KiB, XLSX {len(book) / 1024:.0f} KiB")
    timed("whole export (figures+HTML)", lambda: report.export(
        "YGHY", month, "html", actor="bench"), runs=1)
    print()
    print(report.table(found))
