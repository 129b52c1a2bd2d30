"""client surveys: client contacts surveyed every few months, with a reminder and an unsubscribe

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_survey_months', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('client_survey_time', sa.Time(), server_default='11:00:00', nullable=False))

    op.create_table(
        'client_survey',
        sa.Column('project_id', ID, nullable=False),
        sa.Column('user_id', ID, nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.Column('scale', sa.Enum('0-10', '3-point', name='npsscale', native_enum=False, length=32), nullable=False),
        sa.Column(
            'status',
            sa.Enum(
                'pending', 'sent', 'opened', 'answered', 'declined', 'expired',
                name='surveystatus', native_enum=False, length=32,
            ),
            nullable=False,
        ),
        sa.Column('sent_at', models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('reminded_at', models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('answered_at', models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('score', sa.Integer(), nullable=True),
        sa.Column(
            'category',
            sa.Enum('detractor', 'passive', 'promoter', name='npscategory', native_enum=False, length=32),
            nullable=True,
        ),
        sa.Column('follow_up', sa.Text(), nullable=True),
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['project_id'], ['project.id'], name=op.f('fk_client_survey_project_id_project'), ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(
            ['user_id'], ['user_account.id'], name=op.f('fk_client_survey_user_id_user_account'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_client_survey')),
        sa.UniqueConstraint('project_id', 'user_id', 'due_on', name=op.f('uq_client_survey_project_id_user_id_due_on')),
    )
    with op.batch_alter_table('client_survey', schema=None) as batch_op:
        batch_op.create_index('ix_client_survey_open', ['status', 'sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_client_survey_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_client_survey_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('client_survey', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_client_survey_user_id'))
        batch_op.drop_index(batch_op.f('ix_client_survey_project_id'))
        batch_op.drop_index('ix_client_survey_open')
    op.drop_table('client_survey')
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('client_survey_time')
        batch_op.drop_column('client_survey_months')
