"""Shared by the benchmarks: a throwaway home and database, a Prefect server, `propflow serve`,
process-tree sampling and small statistics.

Make the `Bench(...)` BEFORE importing prefect or anything that imports it: Prefect reads its
settings from the environment at import time, so `Bench(...)` sets it first
(core.prefect_env.configure, as the CLI does).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from core import prefect_env

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `tests.flowkit` is not an installed package
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def until(what: str, probe, timeout: float = 120.0, every: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


class Bench:
    """Temp PROPFLOW_HOME + its own database (SQLite file, or a new PostgreSQL database)."""

    def __init__(self, name: str, pg: bool, mode: str = "training") -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"propflow-bench-{name}-"))
        self.pg_name = f"propflow_bench_{uuid.uuid4().hex[:8]}" if pg else None
        self.prefect_pg: str | None = None
        self.procs: list[subprocess.Popen] = []
        # A plain `kill` should still stop our servers and drop the database: unwind instead.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        os.environ.update(PROPFLOW_HOME=str(self.tmp), PREFECT_HOME=str(self.tmp / "prefect"),
                          PREFECT_SERVER_ANALYTICS_ENABLED="false", PROPFLOW_MODE=mode,
                          # Quiet flow runs started in this process; `serve` gets INFO back.
                          PREFECT_LOGGING_LEVEL="WARNING",
                          # Measured here: the engine, not the web door (nor a taken 8080).
                          PROPFLOW_WEB_PORT="0")
        prefect_env.configure()
        if self.pg_name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.pg_name}"
        else:
            self.url = f"sqlite:///{self.tmp / 'propflow.db'}"
        os.environ["PROPFLOW_DATABASE_URL"] = self.url
        print(f"database: {'PostgreSQL ' + self.pg_name if pg else 'SQLite ' + self.url[10:]}")

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):  # only what we started, by process group
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if "models.db" in sys.modules:
            sys.modules["models.db"].dispose_engines()
        for name in (self.pg_name, self.prefect_pg):
            if name:
                import psycopg

                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)

    def spawn(self, args: list[str], log: str, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(args, cwd=ROOT, env=dict(os.environ, **env),
                                stdout=(self.tmp / log).open("ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)  # own group: killed as a whole
        self.procs.append(proc)
        return proc

    def prefect_server(self, pg: bool = False) -> subprocess.Popen:
        """`prefect server start` on a free port, as scripts/run starts it
        (propflow.prefect_server); PREFECT_API_URL points at it from now on. Its own database
        is SQLite under the bench's home, or with `pg` a throwaway PostgreSQL database, as in
        production (README "Scaling out")."""
        import httpx

        env = {}
        if pg:
            import psycopg

            self.prefect_pg = f"prefect_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.prefect_pg}"')
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = (
                f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.prefect_pg}")
        port = free_port()
        # As scripts/run starts it: without the services propflow does not use.
        env = dict(prefect_env.configure_server(dict(os.environ)), **env)
        proc = self.spawn([PY, "-m", "propflow.prefect_server", "start", "--host",
                           "127.0.0.1", "--port", str(port)], "prefect-server.log", **env)
        url = f"http://127.0.0.1:{port}/api"
        os.environ["PREFECT_API_URL"] = url

        def healthy() -> bool:
            if proc.poll() is not None:
                raise SystemExit((self.tmp / "prefect-server.log").read_text()[-3000:])
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        t0 = time.monotonic()
        until("the Prefect server", healthy, timeout=120, every=0.5)
        print(f"Prefect server {url} healthy after {time.monotonic() - t0:.1f}s")
        return proc

    def prepare(self) -> dict:
        """Schema + demo company; returns the seed with staff ids by role."""
        from models.db import upgrade
        from propflow.demo import seed

        upgrade()
        data = seed()
        data["by_role"] = {}
        for person in data["staff"]:
            data["by_role"].setdefault(person["role"], person["id"])
        return data

    def serve(self, poll: float, executor: str = "threads") -> subprocess.Popen:
        """`propflow serve` as in production. executor "threads" (the default) runs case runs
        in the service, polling Prefect every `poll` seconds; "processes" is Prefect's
        Runner, a new interpreter per run, polling every `poll` seconds too."""
        from prefect.client.orchestration import get_client

        log = self.tmp / "serve.log"
        polls = {"PROPFLOW_RUN_POLL_SECONDS": str(poll)} if executor == "threads" else {
            "PREFECT_RUNNER_POLL_FREQUENCY": str(max(1, round(poll)))}  # whole seconds
        proc = self.spawn([PY, "-m", "propflow.cli", "serve"], "serve.log",
                          PROPFLOW_EXECUTOR=executor, PREFECT_LOGGING_LEVEL="INFO", **polls)

        def served() -> bool:
            if proc.poll() is not None:
                raise SystemExit(log.read_text()[-3000:])
            with get_client(sync_client=True) as client:
                try:
                    client.read_deployment_by_name("repair/repair")
                except Exception:
                    return False
            return "polling for scheduled runs" in log.read_text(errors="replace")
        t0 = time.monotonic()
        until("propflow serve to serve its deployment", served, timeout=120, every=0.5)
        print(f"propflow serve (pid {proc.pid}, executor {executor}, poll {poll}s) ready after "
              f"{time.monotonic() - t0:.1f}s")
        return proc


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of pid and its descendants, living or waited for."""
    total = 0
    for p in _members(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def _members(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    members, frontier = [pid], [pid]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        members += frontier
    return members


def tree(pid: int) -> tuple[int, float]:
    """(process count, summed VmRSS in MiB) of pid and all its descendants, from /proc."""
    members = _members(pid)
    kib = 0
    for p in members:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
        except OSError:
            continue
    return len(members), kib / 1024


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, max(0, round(0.95 * len(xs)) - 1))]
    return (f"n={len(xs)} median={statistics.median(xs):.2f}s p95={p95:.2f}s "
            f"min={xs[0]:.2f}s max={xs[-1]:.2f}s")


def step_status(case_number: str, key: str) -> tuple[int, str, int | None] | None:
    """(step id, status, assignee) of one step of a case, straight from the database."""
    from sqlalchemy import select

    from models.cases import Case, Step
    from models.db import get_engine

    with get_engine().connect() as conn:
        row = conn.execute(select(Step.id, Step.status, Step.assignee_id).join(Case).where(
            Case.number == case_number, Step.key == key)).first()
    return tuple(row) if row else None  # type: ignore[return-value]


def waiting(case_number: str, key: str) -> bool:
    found = step_status(case_number, key)
    return bool(found and found[1] == "waiting")


def flow_run_states(run_ids: set[str]) -> dict[str, str]:
    """State names of the given runs; read_flow_runs in Prefect 3.8.8 needs sort and limit."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    ids, out = [UUID(r) for r in run_ids], {}
    with get_client(sync_client=True) as client:
        for i in range(0, len(ids), 200):  # the API's page limit is 200
            chunk = ids[i:i + 200]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)),
                sort=FlowRunSort.ID_DESC, limit=len(chunk))
            out.update({str(r.id): r.state.name if r.state else "" for r in runs})
    return out
