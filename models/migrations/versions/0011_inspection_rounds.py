"""inspection rounds: one per plan, community, area and fire time; vacant-unit rechecks

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 21:40:00

A round of an inspection plan (巡查) is made once under its unique key, whichever replica or
pass of the planner gets there first; a vacant unit's defect is shown again on the plan's
first round of a later month.
"""

import sqlalchemy as sa
from alembic import op

from models.db import UTCDateTime

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'inspection_rounds',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('plan', sa.String(length=40), nullable=False),
        sa.Column('community_id', sa.Integer(), sa.ForeignKey('communities.id'), nullable=False),
        sa.Column('area', sa.String(length=40), nullable=False),
        sa.Column('fire_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('ends_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('case_id', sa.Integer(), sa.ForeignKey('cases.id'), nullable=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('plan', 'community_id', 'area', 'fire_at'),
        sa.UniqueConstraint('case_id'),
    )
    op.create_index('ix_inspection_rounds_ends_at', 'inspection_rounds', ['ends_at'])
    op.create_table(
        'inspection_rechecks',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('plan', sa.String(length=40), nullable=False),
        sa.Column('community_id', sa.Integer(), sa.ForeignKey('communities.id'), nullable=False),
        sa.Column('unit', sa.String(length=40), nullable=False),
        sa.Column('defect', sa.Text(), nullable=False),
        sa.Column('found_case_id', sa.Integer(), sa.ForeignKey('cases.id'), nullable=False),
        sa.Column('found_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('recheck_case_id', sa.Integer(), sa.ForeignKey('cases.id'), nullable=True),
    )
    op.create_index('ix_inspection_rechecks_found_case_id', 'inspection_rechecks',
                    ['found_case_id'])


def downgrade() -> None:
    op.drop_index('ix_inspection_rechecks_found_case_id', table_name='inspection_rechecks')
    op.drop_table('inspection_rechecks')
    op.drop_index('ix_inspection_rounds_ends_at', table_name='inspection_rounds')
    op.drop_table('inspection_rounds')
