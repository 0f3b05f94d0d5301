"""Finding 7: the audit trail cannot be changed, whichever way one tries, on both databases.

The ORM already refused changes to loaded audit rows; a raw statement or an ORM bulk
update or delete went straight past it. The database itself (triggers, migration 0003)
now refuses them; appending still works.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from models.db import get_engine, unit_of_work
from models.outbox import AuditEvent, audit
from propflow import actions

REPORT = dict(unit="1-1-101", category="public_area", priority="medium", reporter="业主张三",
              phone="13800138000", description="楼道灯不亮")


def _trail(url: str) -> list[tuple]:
    with get_engine(url).connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(AuditEvent.id, AuditEvent.at, AuditEvent.case_id, AuditEvent.actor,
                   AuditEvent.action, AuditEvent.detail).order_by(AuditEvent.id))]


def _raw_update(session: Session) -> None:
    session.execute(text("UPDATE audit_events SET action = 'tampered'"))


def _raw_delete(session: Session) -> None:
    session.execute(text("DELETE FROM audit_events WHERE action = 'case_opened'"))


def _orm_bulk_update(session: Session) -> None:
    session.execute(update(AuditEvent).where(AuditEvent.action == "case_opened")
                    .values(actor="staff:1"))


def _orm_bulk_delete(session: Session) -> None:
    session.execute(delete(AuditEvent))


def _upsert(session: Session) -> None:
    """An insert that takes over an existing row: an update in disguise."""
    first = session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).first()
    session.execute(text(
        "INSERT INTO audit_events (id, at, actor, action, detail) "
        "VALUES (:id, '2026-01-01 00:00:00', 'x', 'tampered', '{}') "
        "ON CONFLICT (id) DO UPDATE SET action = 'tampered'"), {"id": first})


def _insert_or_replace(session: Session) -> None:
    """SQLite's REPLACE deletes the old row without firing delete triggers."""
    first = session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).first()
    session.execute(text(
        "INSERT OR REPLACE INTO audit_events (id, at, actor, action, detail) "
        "VALUES (:id, '2026-01-01 00:00:00', 'x', 'tampered', '{}')"), {"id": first})


CHANGES: dict[str, Callable[[Session], None]] = {
    "raw-update": _raw_update, "raw-delete": _raw_delete, "orm-bulk-update": _orm_bulk_update,
    "orm-bulk-delete": _orm_bulk_delete, "upsert": _upsert,
}


@pytest.mark.parametrize("change", list(CHANGES.values()), ids=list(CHANGES))
def test_changing_the_trail_is_refused_by_the_database(demo, db, change):
    actions.open_repair(start_run=False, **REPORT)
    before = _trail(db)
    assert any(row[4] == "case_opened" for row in before)

    with pytest.raises(DBAPIError) as refused, unit_of_work() as session:
        change(session)
    # Whoever meets it (a log, an operator at a SQL prompt) reads what happened and why.
    message = str(refused.value.orig)
    assert "审计记录只能追加" in message and "audit_events is append-only" in message
    assert "expected INSERT only" in message
    assert _trail(db) == before


def test_insert_or_replace_cannot_overwrite_a_row_on_sqlite(demo, db):
    if not db.startswith("sqlite"):
        pytest.skip("INSERT OR REPLACE is SQLite's own")
    actions.open_repair(start_run=False, **REPORT)
    before = _trail(db)
    with pytest.raises(DBAPIError) as refused, unit_of_work() as session:
        _insert_or_replace(session)
    assert "audit_events is append-only" in str(refused.value.orig)
    assert _trail(db) == before


def test_appending_still_works(demo, db, clock):
    actions.open_repair(start_run=False, **REPORT)
    before = _trail(db)
    with unit_of_work() as session:
        audit(session, at=clock.now(), actor="staff:1", action="note", detail_text="补记")
        session.execute(text(
            "INSERT INTO audit_events (at, actor, action, detail) "
            "VALUES ('2026-11-24 01:00:00', 'sla-clock', 'raw_note', '{}')"))
    after = _trail(db)
    assert after[:len(before)] == before
    assert [row[4] for row in after[len(before):]] == ["note", "raw_note"]
    with unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == len(before) + 2
