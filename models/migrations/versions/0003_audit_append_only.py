"""audit trail append-only in the database itself

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 15:40:00

The ORM refuses changes to audit rows, but a raw statement or a bulk update bypasses it:
the database refuses UPDATE and DELETE on audit_events for everyone. On SQLite an
INSERT OR REPLACE would delete the old row without firing delete triggers: an insert
that reuses an existing id is refused too.
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# Whoever meets it reads it in a log or at a SQL prompt: say what and why, in both languages.
MESSAGE = "审计记录只能追加，不能修改或删除 (audit_events is append-only)；expected INSERT only"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql
        """)
        op.execute("""
            CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
            FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
        """)
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events
                BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
            """)
        op.execute(f"""
            CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events
            WHEN EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id)
            BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
        """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        for verb in ("update", "delete", "replace"):
            op.execute(f"DROP TRIGGER audit_events_no_{verb}")
