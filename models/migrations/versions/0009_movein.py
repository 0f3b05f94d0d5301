"""move-in: ID numbers stored encrypted, with their mask

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:00:00

A move-in records the owner's (and an agent's) resident ID number only as a Fernet token
under PROPFLOW_ID_KEY, beside the mask staff see (110101********1234).
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'identity_numbers',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('case_id', sa.Integer(), sa.ForeignKey('cases.id'), nullable=False),
        sa.Column('person', sa.String(length=20), nullable=False),
        sa.Column('cipher', sa.Text(), nullable=False),
        sa.Column('masked', sa.String(length=24), nullable=False),
    )
    op.create_index('ix_identity_numbers_case_id', 'identity_numbers', ['case_id'])


def downgrade() -> None:
    op.drop_index('ix_identity_numbers_case_id', table_name='identity_numbers')
    op.drop_table('identity_numbers')
