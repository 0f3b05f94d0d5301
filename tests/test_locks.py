"""SQLite under concurrent writers: a lock is waited for, never reported as a bad URL.

No Prefect here: the opens below find it away, so every case waits for the SLA clock.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from models import db as db_module
from models.cases import Case
from models.db import unit_of_work

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sqlite_demo(demo, db):  # type: ignore[no-untyped-def]
    if not db.startswith("sqlite"):
        pytest.skip("SQLite's file lock")
    return demo


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_twenty_cli_opens_ten_at_a_time_are_all_recorded(sqlite_demo, db):
    env = dict(os.environ, PREFECT_API_URL=f"http://127.0.0.1:{_closed_port()}/api",
               PROPFLOW_DATABASE_URL=db)

    def open_one(i: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "propflow.cli", "repair", "open", "--unit", "1-1-101",
             "--category", "public_area", "--priority", "medium", "--reporter", f"业主{i}",
             "--phone", "13800138000", "--description", f"楼道灯不亮 {i}", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=10) as pool:
        done = list(pool.map(open_one, range(20)))

    refused = [p.stderr.strip()[-300:] for p in done if p.returncode != 0]
    assert refused == []
    numbers = {json.loads(p.stdout)["number"] for p in done}
    with unit_of_work(write=False) as session:
        recorded = set(session.scalars(select(Case.number)))
    assert recorded == numbers and len(numbers) == 20
    assert all("Prefect 暂不可达" in json.loads(p.stdout)["note"] for p in done)


def test_a_held_lock_is_reported_as_busy_not_as_a_bad_url(sqlite_demo, db, monkeypatch):
    monkeypatch.setattr(db_module, "BUSY_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(db_module, "BUSY_BACKOFF_SECONDS", 0.01)
    db_module.dispose_engines()  # the next connections wait only that long
    holder = sqlite3.connect(db.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        from core.errors import PropflowError
        from propflow import actions

        with pytest.raises(PropflowError) as refused:
            actions.open_repair(start_run=False, unit="1-1-101", category="public_area",
                                priority="medium", reporter="业主张三", phone="13800138000",
                                description="楼道灯不亮")
        assert refused.value.code == "database_busy"
        assert "PROPFLOW_DATABASE_URL" not in refused.value.message
        assert "数据库繁忙" in refused.value.message and "expected" in refused.value.message
        # Readers are not held up by a writer.
        with unit_of_work(write=False) as session:
            assert session.scalars(select(Case.number)).all() == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        db_module.dispose_engines()


def test_a_write_inside_a_write_on_sqlite_fails_at_once(sqlite_demo):
    with unit_of_work() as session:
        session.execute(select(1))
        with pytest.raises(RuntimeError, match="deadlock"):
            with unit_of_work():
                pass


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request, tmp_path):  # type: ignore[no-untyped-def]
    """A database with no schema at all, as on a first start."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.db'}"
        return
    import uuid

    import psycopg

    from tests.conftest import PG_ADMIN, PG_OK

    if not PG_OK:
        pytest.skip("PostgreSQL not reachable")
    name = f"propflow_new_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    db_module.dispose_engines()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
def test_commands_started_at_once_on_a_new_database_all_work(new_database):
    """Every command migrates first: the first migrates, under a lock; the others wait."""
    env = dict(os.environ, PROPFLOW_DATABASE_URL=new_database)

    def upgrade_one(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "propflow.cli", "db", "upgrade", "--json"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=6) as pool:
        done = list(pool.map(upgrade_one, range(6)))
    assert [p.stderr.strip()[-300:] for p in done if p.returncode != 0] == []
    assert all(json.loads(p.stdout)["status"] == "up to date" for p in done)
