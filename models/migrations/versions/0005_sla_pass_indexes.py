"""indexes for the SLA pass: waiting steps by due time, and by warning time at level 0

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 10:00:00
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every SLA pass asks for waiting steps due (or warned) by now; with status first, a pass
    # with nothing due reads a few index entries, not every waiting step.
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.create_index('ix_steps_status_due_at', ['status', 'due_at'], unique=False)
        batch_op.create_index('ix_steps_status_level_warn_at', ['status', 'level', 'warn_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_index('ix_steps_status_level_warn_at')
        batch_op.drop_index('ix_steps_status_due_at')
