"""run tracking on cases: who starts a case's run, and the supervision of that run

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:40:00
"""

from alembic import op
import sqlalchemy as sa
import models.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        # The start of a pending run is claimed, so replicas never start one twice.
        batch_op.add_column(sa.Column('run_claimed_by', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('run_claimed_at', models.db.UTCDateTime(timezone=True),
                                      nullable=True))
        # Supervision: the run's last seen state, restarts so far, when to look again.
        batch_op.add_column(sa.Column('run_state', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('run_restarts', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('run_checked_at', models.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('run_retry_at', models.db.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        for name in ('run_retry_at', 'run_checked_at', 'run_restarts', 'run_state',
                     'run_claimed_at', 'run_claimed_by'):
            batch_op.drop_column(name)
