"""Engine, sessions and the unit of work. SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, create_engine, event, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from propflow.errors import PropflowError
from propflow.settings import get_settings

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


class Base(DeclarativeBase):
    pass


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
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            # Flows, the SLA clock and the CLI write at once: WAL lets readers go on.
            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        _engines[url] = engine
    return _engines[url]


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def unit_of_work(url: str | None = None) -> Iterator[Session]:
    """One transaction: everything written inside (events, outbox, audit) commits together."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise unreachable(url, exc) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


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
            conn.execute(text("select 1"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
    except OperationalError as exc:
        raise unreachable(url, exc) from exc
