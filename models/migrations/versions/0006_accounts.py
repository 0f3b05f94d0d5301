"""accounts for the web door: passwords, API tokens, sign-in attempts

(notifications.read_at, for "mark read", is in the initial schema already.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 13:10:00
"""

import sqlalchemy as sa
from alembic import op

import models.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'staff_credentials',
        sa.Column('staff_id', sa.Integer(), sa.ForeignKey('staff.id'), primary_key=True),
        sa.Column('login', sa.String(length=60), nullable=True, unique=True),
        sa.Column('password_hash', sa.String(length=255), nullable=False),
        sa.Column('set_at', models.db.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('staff_id', sa.Integer(), sa.ForeignKey('staff.id'), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False, unique=True),
        sa.Column('created_at', models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', models.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', models.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_api_tokens_staff_id', 'api_tokens', ['staff_id'])
    op.create_table(
        'sign_in_attempts',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('at', models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('login', sa.String(length=100), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
    )
    # The rate limit asks for recent failures by login and by address.
    op.create_index('ix_sign_in_attempts_login_at', 'sign_in_attempts', ['login', 'at'])
    op.create_index('ix_sign_in_attempts_address_at', 'sign_in_attempts', ['address', 'at'])


def downgrade() -> None:
    op.drop_index('ix_sign_in_attempts_address_at', table_name='sign_in_attempts')
    op.drop_index('ix_sign_in_attempts_login_at', table_name='sign_in_attempts')
    op.drop_table('sign_in_attempts')
    op.drop_index('ix_api_tokens_staff_id', table_name='api_tokens')
    op.drop_table('api_tokens')
    op.drop_table('staff_credentials')
