"""monthly report: the steps decided in a window, by kind (the callbacks' ratings)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 21:40:00

The monthly report reads the ratings given over twelve months: the callback steps decided
in that window. Without this index every step of the table is read to find them.
"""

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_steps_kind_decided_at', 'steps', ['kind', 'decided_at'])


def downgrade() -> None:
    op.drop_index('ix_steps_kind_decided_at', table_name='steps')
