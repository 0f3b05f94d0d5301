"""approval operations: who claimed a step, steps sent back or withdrawn, a step's signers

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 13:30:00

A step claimed from its role remembers who claimed it (unclaim gives it back). A step sent
back (驳回) or withdrawn (撤回) is never reopened in place: a new instance replaces it
(replaced_by), and a step cancelled by such a rewind is `rewound`, so asking it again opens
a new one. step_signers holds everyone with a part in a step besides its one decider: the
policy's 会签/或签/依次 approvers, 加签 before and after, 委派 delegates and 抄送 watchers.
"""

import sqlalchemy as sa
from alembic import op

import models.db

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('replaced_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rewound', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.create_table(
        'step_signers',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('step_id', sa.Integer(), sa.ForeignKey('steps.id'), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('staff_id', sa.Integer(), sa.ForeignKey('staff.id'), nullable=True),
        sa.Column('role', sa.String(length=40), nullable=True),
        sa.Column('position', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('anchor_id', sa.Integer(), nullable=True),
        sa.Column('added_by', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('values', sa.JSON(), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False, server_default=''),
        sa.Column('signed_by', sa.Integer(), nullable=True),
        sa.Column('signed_at', models.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', models.db.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_step_signers_step_id', 'step_signers', ['step_id'])
    op.create_index('ix_step_signers_staff_id_status', 'step_signers', ['staff_id', 'status'])


def downgrade() -> None:
    op.drop_index('ix_step_signers_staff_id_status', table_name='step_signers')
    op.drop_index('ix_step_signers_step_id', table_name='step_signers')
    op.drop_table('step_signers')
    with op.batch_alter_table('steps', schema=None) as batch_op:
        for name in ('rewound', 'replaced_by', 'claimed_by'):
            batch_op.drop_column(name)
