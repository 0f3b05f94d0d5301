"""Engine, sessions and the unit of work. SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    Column,
    CursorResult,
    DateTime,
    Result,
    Table,
    create_engine,
    event,
    inspect,
    make_url,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

from core import clock
from core.clock import Clock
from core.errors import PropflowError
from core.settings import get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, always hands back aware datetimes (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("expected an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def words(vocabulary: type[StrEnum], length: int) -> SAEnum:
    """A column of one of core.vocabulary's words: stored as the plain string (VARCHAR, no
    database enum or constraint, so the schema is unchanged), read back as the member; a
    string that is not one of them is refused before it reaches the database."""
    return SAEnum(vocabulary, native_enum=False, create_constraint=False, length=length,
                  validate_strings=True, values_callable=lambda members: [m.value for m in members])


class Base(DeclarativeBase):
    # Each of our classes maps one table (SQLAlchemy allows any selectable, so it says
    # FromClause): bulk statements over the batch are written against it.
    __table__: ClassVar[Table]


_engines: dict[str, Engine] = {}


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


URL_EXPECTED = ("expected sqlite:///path/to/propflow.db or "
                "postgresql+psycopg://user@host:5432/dbname")


def check_url(url: str) -> str:
    """Refuse a URL we cannot serve before SQLAlchemy turns it into a traceback."""
    try:
        parsed = make_url(url)
    except ArgumentError:  # not echoed: it may carry a password
        raise PropflowError(f"PROPFLOW_DATABASE_URL：不是数据库 URL；{URL_EXPECTED}",
                            field="PROPFLOW_DATABASE_URL") from None
    # Only the drivers we ship (SQLAlchemy 2.1 reads plain postgresql:// as psycopg).
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql",
                                 "postgresql+psycopg"):
        raise PropflowError(f"PROPFLOW_DATABASE_URL：不支持的数据库 {parsed.drivername!r}；"
                            f"{URL_EXPECTED}", field="PROPFLOW_DATABASE_URL")
    return url


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().db_url
    if url not in _engines:
        check_url(url)
        kwargs: dict[str, object] = {"future": True, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": BUSY_WAIT_SECONDS, "check_same_thread": False}
        engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            _sqlite_transactions(engine)
        _engines[url] = engine
    return _engines[url]


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


# How long one attempt waits for another writer, how many attempts, and the first pause
# between them (doubled each time, with jitter so that waiting writers do not move in step).
BUSY_WAIT_SECONDS = 10.0
BUSY_ATTEMPTS = 4
BUSY_BACKOFF_SECONDS = 0.2


def _sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy's pysqlite recipe: we emit BEGIN ourselves, IMMEDIATE for a writer.

    pysqlite left alone begins lazily (DEFERRED): a unit that reads and then writes must
    upgrade its lock, and SQLite refuses that upgrade at once with "database is locked"
    whenever another writer is active, without honouring busy_timeout. BEGIN IMMEDIATE
    takes the write lock first, and waiting for it does honour busy_timeout.
    """

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # no implicit BEGIN/COMMIT from the driver
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_WAIT_SECONDS * 1000)}")
        # Flows, the SLA clock and the CLI write at once: WAL lets readers go on.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        writing = conn.get_execution_options().get("propflow_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


_held = threading.local()  # the SQLite databases this thread holds the write lock of


@contextmanager
def unit_of_work(url: str | None = None, *, write: bool = True) -> Iterator[Session]:
    """One transaction: everything written inside (events, outbox, audit) commits together.

    On SQLite a writing unit takes the database's write lock before it starts (waiting, and
    retrying with backoff, while another process holds it), so it never fails half-way on a
    lock. `write=False` is for units that only read: they run beside writers without waiting.
    """
    url = url or get_settings().db_url
    engine = get_engine(url)
    sqlite_writer = write and engine.dialect.name == "sqlite"
    if sqlite_writer and url in _holding():
        # The inner unit would wait for the outer one's lock, and the outer for the inner.
        raise RuntimeError("a writing unit of work inside another on the same SQLite database "
                           "would deadlock; read with unit_of_work(write=False)")
    session = _begin(url, engine.execution_options(propflow_write=write))
    if sqlite_writer:
        _holding().add(url)
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise database_error(url, exc) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        if sqlite_writer:
            _holding().discard(url)
        session.close()


def _holding() -> set[str]:
    urls: set[str] | None = getattr(_held, "urls", None)
    if urls is None:
        urls = _held.urls = set()
    return urls


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """The rows a guarded UPDATE or DELETE changed: how a claim knows it won. Session.execute
    is typed as returning any Result; for those statements it is a CursorResult."""
    assert isinstance(result, CursorResult)
    return result.rowcount


def _begin(url: str, bind: Engine) -> Session:
    """A session whose transaction has begun: on SQLite the lock is taken here, not later."""
    for attempt in range(BUSY_ATTEMPTS):
        session = Session(bind, expire_on_commit=False)
        try:
            session.connection()
            return session
        except OperationalError as exc:
            session.close()
            if not is_busy(exc):
                raise unreachable(url, exc) from exc
            if attempt == BUSY_ATTEMPTS - 1:
                raise busy(url, exc) from exc
            pause = BUSY_BACKOFF_SECONDS * 2 ** attempt
            time.sleep(pause * (0.5 + random.random()))
    raise AssertionError("unreachable")  # the loop returns or raises


def is_busy(exc: Exception) -> bool:
    """A lock held by someone else (worth waiting for), not a database we cannot reach."""
    orig = getattr(exc, "orig", exc)
    text_ = str(orig).lower()
    if "database is locked" in text_ or "database table is locked" in text_ or (
            "database is busy" in text_):
        return True
    # PostgreSQL: serialization failures, deadlocks and lock timeouts (SQLSTATE 40xxx, 55P03)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or ""
    return code.startswith("40") or code == "55P03"


def database_error(url: str | None, exc: OperationalError) -> PropflowError:
    return busy(url, exc) if is_busy(exc) else unreachable(url, exc)


def busy(url: str | None, exc: Exception) -> PropflowError:
    shown = safe_url(url or get_settings().db_url)
    waited = max(1, round(BUSY_WAIT_SECONDS * BUSY_ATTEMPTS))
    return PropflowError(
        f"数据库繁忙 {shown}：其他操作正占用写锁，已等待约 {waited} 秒仍未释放，请稍后重试；"
        f"expected the database to be free within {waited} s (nothing was changed)",
        field="database", code="database_busy",
    )


def unreachable(url: str | None, exc: Exception) -> PropflowError:
    shown = safe_url(url or get_settings().db_url)
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    return PropflowError(
        f"无法连接数据库 {shown}：{reason}（检查 PROPFLOW_DATABASE_URL）；"
        "expected a reachable database URL",
        field="PROPFLOW_DATABASE_URL",
        code="database_unreachable",
    )


_REVISION = re.compile(r"^revision\b[^=\n]*=\s*['\"](\w+)['\"]", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=\n]*=(.*)$", re.M)


def _heads() -> set[str]:
    """The newest migrations, read from the scripts; empty when one is not in a form we read."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if not revision or not down:
            return set()
        revisions.add(revision.group(1))
        parents.update(re.findall(r"['\"](\w+)['\"]", down.group(1)))
    return revisions - parents


def _at_head(url: str) -> bool:
    """Whether the schema is at the newest migration already: one query, no Alembic."""
    heads = _heads()
    try:
        with get_engine(url).connect() as conn:
            current = set(conn.execute(text("select version_num from alembic_version")).scalars())
    except DBAPIError:  # no schema yet, or no database: Alembic creates it or says why
        return False
    return bool(heads) and current == heads


def all_tables() -> list[Table]:
    """Every table of ours, in dependency order. A model module registers its tables when it
    is imported, and many are imported only when first used: importing them all here is what
    makes a list (a truncation, a count of every table) complete whatever ran before."""
    import pkgutil
    from importlib import import_module

    import models

    for module in pkgutil.iter_modules(models.__path__):
        if module.name != "migrations":
            import_module(f"models.{module.name}")
    return list(Base.metadata.sorted_tables)


def upgrade(url: str | None = None) -> None:
    """Bring the schema to the newest migration (Alembic). Every command calls this, and
    importing Alembic costs a read command more than all its own work: when the schema is
    already at the newest migration, one query says so and Alembic is not loaded."""
    url = url or get_settings().db_url
    if _at_head(url):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    try:
        with get_engine(url).connect() as conn:
            # Every command upgrades first, so a burst of commands on a new database all
            # get here: one migrates under the write lock, the others then find it done.
            conn.execution_options(propflow_write=True)
            if conn.dialect.name == "postgresql":
                conn.execute(text("select pg_advisory_xact_lock(7242050113)"))
            else:
                conn.execute(text("select 1"))  # BEGIN IMMEDIATE: waits for the lock
            current = set()
            if inspect(conn).has_table("alembic_version"):
                current = set(conn.execute(text("select version_num from alembic_version"))
                              .scalars())
            if not current or current != _heads():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            conn.commit()
    except OperationalError as exc:
        raise database_error(url, exc) from exc


def _training_clock() -> Clock:
    # Imported when first asked for: models.simclock reads tables that import this module.
    from models.simclock import TrainingClock

    return TrainingClock()


# Training mode keeps its time in this database: every process that can reach the database
# gets the shared clock, and core.clock never has to import the models.
clock.install_training_clock(_training_clock)


# The dialects are imported where used: the PostgreSQL one costs every command's start, and a
# read command writes nothing (tests/test_cli_startup.py).
def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("expected an aware datetime")
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value this batch can carry")


def _from_json(table: Table, rows: list[dict[str, Any]]) -> tuple[Any, dict[str, str]]:
    """On PostgreSQL, `json_populate_recordset(NULL::table, :rows)`: the batch as one JSON
    parameter, read back by the server as rows of the table's own type; returns the source
    and its parameter. Columns of arrays, one parameter each, cost the driver a quoting pass
    per element in Python: 1,000 outbox rows took 260 ms to send that way, 50 ms as JSON."""
    from sqlalchemy import Text, bindparam, cast, func, literal_column
    from sqlalchemy.dialects import postgresql

    name = postgresql.dialect().identifier_preparer.format_table(table)
    source = func.json_populate_recordset(
        literal_column(f"NULL::{name}"), cast(bindparam("rows", type_=Text), postgresql.JSON)
    ).table_valued(*table.c.keys())
    payload = json.dumps(rows, default=_json_value, ensure_ascii=False)
    return source, {"rows": payload}


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]],
                skip_existing: list[str] | None = None) -> None:
    """A batch's rows (each with the same keys) in one statement; with `skip_existing`, a row
    whose unique columns are already written is skipped by the database, not raised.

    On PostgreSQL one INSERT ... SELECT from the rows sent as JSON (_from_json): the
    driver's executemany sends a statement per row (1,000 audit rows: 50-75 ms)."""
    if not rows:
        return
    names = list(rows[0])
    if any(row.keys() != rows[0].keys() for row in rows):
        raise ValueError(f"insert_rows into {table.name}: every row needs the keys {names}")
    if session.get_bind().dialect.name != "postgresql":
        from sqlalchemy.dialects import sqlite

        lite = sqlite.insert(table)
        session.execute(lite.on_conflict_do_nothing(index_elements=skip_existing)
                        if skip_existing else lite, rows)
        return
    from sqlalchemy import select
    from sqlalchemy.dialects import postgresql

    source, params = _from_json(table, rows)
    pg = postgresql.insert(table).from_select(names, select(*[source.c[n] for n in names]))
    session.execute(pg.on_conflict_do_nothing(index_elements=skip_existing)
                    if skip_existing else pg, params)


def set_each(session: Session, column: Column[Any], values: dict[int, Any]) -> None:
    """UPDATE the column of each row by id to its own value: on PostgreSQL in one statement
    from the rows sent as JSON, elsewhere by executemany."""
    if not values:
        return
    from sqlalchemy import bindparam, update

    table = column.table
    if session.get_bind().dialect.name != "postgresql":
        session.execute(update(table).where(table.c.id == bindparam("row_id"))
                        .values({column.name: bindparam("row_value")}),
                        [{"row_id": i, "row_value": v} for i, v in values.items()])
        return
    source, params = _from_json(table, [{"id": i, column.name: v} for i, v in values.items()])
    session.execute(update(table).where(table.c.id == source.c.id)
                    .values({column.name: source.c[column.name]}), params)
