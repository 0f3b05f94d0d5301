"""monthly report: the supervisor's improvement suggestion, and the report's indexes

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 21:30:00

One suggestion per community and month (its edits are in the audit trail). The figures
read one month of a community's cases by procedure and time, and look for an earlier repair
of the same unit and category (the repeat-repair rate): two indexes make those lookups.
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'report_suggestions',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('community_id', sa.Integer(), sa.ForeignKey('communities.id'), nullable=False),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('updated_by', sa.String(length=80), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('community_id', 'month'),
    )
    op.create_index('ix_cases_procedure_created_at', 'cases',
                    ['procedure', 'community_id', 'created_at'])
    op.create_index('ix_cases_unit_category_created_at', 'cases',
                    ['unit_id', 'category', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_cases_unit_category_created_at', table_name='cases')
    op.drop_index('ix_cases_procedure_created_at', table_name='cases')
    op.drop_table('report_suggestions')
