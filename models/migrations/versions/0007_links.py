"""one-tap links (staff: one step's page; owners: their answer page) and the template of a
text message in the outbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 13:40:00
"""

import sqlalchemy as sa
from alembic import op

import models.db

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'links',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('token_hash', sa.String(length=64), nullable=False, unique=True),
        sa.Column('audience', sa.String(length=10), nullable=False),
        sa.Column('step_id', sa.Integer(), sa.ForeignKey('steps.id'), nullable=False),
        sa.Column('staff_id', sa.Integer(), sa.ForeignKey('staff.id'), nullable=True),
        sa.Column('created_at', models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('used_at', models.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('form_token', sa.String(length=64), nullable=False),
    )
    op.create_index('ix_links_step_id', 'links', ['step_id'])
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('params', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('params')
    op.drop_index('ix_links_step_id', table_name='links')
    op.drop_table('links')
