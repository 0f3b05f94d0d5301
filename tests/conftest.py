"""Test tiers: unit (no DB), integration (SQLite always, PostgreSQL when reachable), flows
(one Prefect API server per session). Time is moved by an injected clock, never slept."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

_tmp = Path(tempfile.mkdtemp(prefix="propflow-tests-"))
os.environ["PROPFLOW_HOME"] = str(_tmp)
os.environ["PREFECT_HOME"] = str(_tmp / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PROPFLOW_PAUSE_POLL_SECONDS"] = "0.2"
os.environ["PROPFLOW_WEB_PORT"] = "0"  # a served web door takes a free port (servekit, webkit)
# Links in messages keep one address whatever port a test's web door took.
os.environ["PROPFLOW_PUBLIC_URL"] = "http://127.0.0.1:8080"
os.environ.pop("PROPFLOW_DATABASE_URL", None)
os.environ.pop("PROPFLOW_MODE", None)

from core import prefect_env  # noqa: E402

prefect_env.configure()
prefect_env.configure_server()  # the session's Prefect server, as scripts/run starts one
# Prefect sets up its logging when first imported, and its console handler keeps the stream
# that is sys.stderr at that moment. Imported first inside a CLI test (CliRunner's stream,
# closed when the command ends), every later Prefect log in the session failed with "I/O
# operation on closed file". Imported here, it keeps pytest's own stream.
import prefect.main  # noqa: E402, F401  (where Prefect sets its logging up)
import psycopg  # noqa: E402
import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402

from core import clock as clock_module  # noqa: E402
from core.settings import reset_settings  # noqa: E402
from models.db import all_tables, dispose_engines, get_engine, upgrade  # noqa: E402
from tests.browser import any_page, browser, page_desktop, page_phone  # noqa: E402, F401
from tests.servekit import service  # noqa: E402, F401
from tests.servers import http_receiver, smtp_server  # noqa: E402, F401
from tests.webkit import live_web, web_client  # noqa: E402, F401

PG_ADMIN = os.environ.get("PROPFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SHANGHAI = ZoneInfo("Asia/Shanghai")
_pg_used: list[str] = []
_prefect_db: list[str] = []  # the Prefect server's database, when on PostgreSQL


def _pg_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


PG_OK = _pg_reachable()


def pytest_configure(config: pytest.Config) -> None:
    if not PG_OK and os.environ.get("CI") == "true":
        raise pytest.UsageError(f"CI needs PostgreSQL and cannot reach it at {PG_ADMIN}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast tier, `-m "not prefect and not slow"`, is what needs no Prefect server and
    no browser: marked here from the fixtures a test uses, so no test has to remember to."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if "prefect_api" in used:
            item.add_marker(pytest.mark.prefect)
        if "browser" in used:
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under pytest-xdist each worker tells the controller which tests used PostgreSQL.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["pg_used"] = list(_pg_used)
        workeroutput["prefect_db"] = list(_prefect_db)


def pytest_testnodedown(node, error) -> None:  # type: ignore[no-untyped-def]
    _pg_used.extend(getattr(node, "workeroutput", {}).get("pg_used", []))
    _prefect_db.extend(getattr(node, "workeroutput", {}).get("prefect_db", []))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    tr = terminalreporter
    if _prefect_db:
        tr.write_line(f"Prefect server: on PostgreSQL (databases {', '.join(_prefect_db)})")
    if _pg_used:
        tr.write_line(f"PostgreSQL: {len(_pg_used)} tests ran against {PG_ADMIN.rsplit('/', 1)[0]}"
                      f" (databases {', '.join(sorted(set(_pg_used)))})")
    elif PG_OK:
        tr.write_line("PostgreSQL: reachable, but no selected test used it")
    else:
        tr.write_line(f"PostgreSQL: not reachable at {PG_ADMIN}; its tests were skipped")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"propflow_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade(url)
    yield url
    dispose_engines()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _backends() -> list[object]:
    skip = pytest.mark.skip(reason="PostgreSQL not reachable")
    return ["sqlite", pytest.param("postgresql", marks=() if PG_OK else skip)]


@pytest.fixture(params=_backends())
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean database on each backend; the service reads it through PROPFLOW_DATABASE_URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'propflow.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_database")
        tables = ", ".join(t.name for t in all_tables())
        with get_engine(url).begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        _pg_used.append(url.rsplit("/", 1)[1])
    monkeypatch.setenv("PROPFLOW_DATABASE_URL", url)
    reset_settings()
    yield url
    reset_settings()


@pytest.fixture
def clock() -> Iterator[clock_module.ManualClock]:
    """Tuesday 2026-11-24 09:00 in Shanghai, a working day."""
    manual = clock_module.ManualClock(datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI))
    clock_module.set_clock(manual)
    yield manual
    clock_module.set_clock(None)


@pytest.fixture
def demo(db: str, clock: clock_module.ManualClock) -> dict:
    from propflow.demo import seed

    data = seed()
    data["by_role"] = {}
    for person in data["staff"]:
        data["by_role"].setdefault(person["role"], person["id"])
    return data


@pytest.fixture
def training_mode(demo: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Training mode on the demo company, Prefect away; returns a setter for the real time
    (Shanghai), from which a new training clock starts."""
    from tasks import runs

    monkeypatch.setenv("PROPFLOW_MODE", "training")
    reset_settings()
    clock_module.set_clock(None)  # the TrainingClock kept in the database, as configured
    monkeypatch.setattr(runs, "start", lambda *args, **kwargs: None)

    def real_time(*at: int) -> None:
        wall = clock_module.ManualClock(datetime(*at, tzinfo=SHANGHAI))
        monkeypatch.setattr(clock_module, "wall_clock", wall)

    yield real_time
    reset_settings()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One Prefect server for the session: on PostgreSQL when it is reachable (production's
    database for Prefect, and no SQLite lock to wait on: tests/prefectkit.py), else on SQLite.
    PROPFLOW_TEST_PREFECT_DB=sqlite keeps it on SQLite."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    if not PG_OK or os.environ.get("PROPFLOW_TEST_PREFECT_DB") == "sqlite":
        with prefect_test_harness(server_startup_timeout=180):
            yield str(PREFECT_API_URL.value())
        return
    from tests.prefectkit import prefect_server

    name = f"propflow_prefect_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _prefect_db.append(name)
    try:
        with prefect_server(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}") as url:
            yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _no_runs_left_by_earlier_tests(request: pytest.FixtureRequest) -> None:
    """Each test using the session's Prefect server starts with no unfinished run of another
    test on it (tests/prefectkit.py, forget_unfinished_runs)."""
    if "prefect_api" in request.fixturenames:
        request.getfixturevalue("prefect_api")
        from tests.prefectkit import forget_unfinished_runs

        forget_unfinished_runs()


@pytest.fixture
def policy_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Write a policy file: the demo policy with top-level keys replaced, or changed in place
    by `edit` (a function given the parsed policy)."""
    import yaml

    from core.settings import DEMO_POLICY

    def write(edit: Callable[[dict], None] | None = None, **changes: object) -> Path:  # type: ignore[type-arg]
        data = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8")) | changes
        if edit:
            edit(data)
        path = tmp_path / f"policy-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        monkeypatch.setenv("PROPFLOW_POLICY", str(path))
        reset_settings()
        return path

    yield write
    reset_settings()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Set PROPFLOW_* variables for one test; settings are re-read now and after."""
    names: list[str] = []

    def set_(name: str, value: str) -> None:
        names.append(name)
        monkeypatch.setenv(name, value)
        reset_settings()

    yield set_
    for name in names:
        monkeypatch.delenv(name, raising=False)
    reset_settings()
