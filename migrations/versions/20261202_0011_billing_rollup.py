"""billing roll-up: validated contacts per local day, promoter and store, the days rolled up, and the UTC
days whose roll-up a changed verdict made stale

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 01:02:25.981855
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('billing_day',
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('promoter_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('store', sa.String(length=200), nullable=False),
    sa.Column('validated', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_billing_day_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['promoter_id'], ['user_account.id'], name=op.f('fk_billing_day_promoter_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'day', 'promoter_id', 'store', name=op.f('pk_billing_day'))
    )
    op.create_table('billing_rollup',
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('computed_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_billing_rollup_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'day', name=op.f('pk_billing_rollup'))
    )
    op.create_table('billing_stale',
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('utc_day', sa.Date(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_billing_stale_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'utc_day', name=op.f('pk_billing_stale'))
    )


def downgrade() -> None:
    op.drop_table('billing_stale')
    op.drop_table('billing_rollup')
    op.drop_table('billing_day')
