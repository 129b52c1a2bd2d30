"""customer surveys: project survey settings, survey progress, manager alerts with their resolution

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import models.base

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('survey_enabled', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('survey_ttl_hours', sa.Integer(), server_default='72', nullable=False))
        batch_op.add_column(sa.Column('survey_cooldown_days', sa.Integer(), server_default='30', nullable=False))
        batch_op.add_column(
            sa.Column('survey_thank_on_resolve', sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(sa.Column('survey_question', JSON, server_default='{}', nullable=False))

    with op.batch_alter_table('nps_survey', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opened_at', models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('answered_at', models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column('follow_up_done_at', models.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index('ix_nps_survey_customer', ['customer_telegram_id', 'answered_at'], unique=False)

    op.create_table(
        'manager_alert',
        sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column(
            'kind', sa.Enum('detractor', name='alertkind', native_enum=False, length=32), nullable=False
        ),
        sa.Column('contact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('survey_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('details', JSON, nullable=False),
        sa.Column(
            'status',
            sa.Enum('open', 'taken', 'resolved', name='alertstatus', native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column('taken_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('taken_at', models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('resolved_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('resolved_at', models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('resolution_note', sa.Text(), nullable=True),
        sa.Column('repeated_at', models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['contact_id'], ['contact.id'], name=op.f('fk_manager_alert_contact_id_contact'), ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(
            ['project_id'], ['project.id'], name=op.f('fk_manager_alert_project_id_project'), ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(
            ['resolved_by_id'], ['user_account.id'], name=op.f('fk_manager_alert_resolved_by_id_user_account')
        ),
        sa.ForeignKeyConstraint(
            ['survey_id'], ['nps_survey.id'], name=op.f('fk_manager_alert_survey_id_nps_survey'), ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(
            ['taken_by_id'], ['user_account.id'], name=op.f('fk_manager_alert_taken_by_id_user_account')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_manager_alert')),
        sa.UniqueConstraint('survey_id', name=op.f('uq_manager_alert_survey_id')),
    )
    with op.batch_alter_table('manager_alert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_manager_alert_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index('ix_manager_alert_open', ['status', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_manager_alert_project_id'), ['project_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('manager_alert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_manager_alert_project_id'))
        batch_op.drop_index('ix_manager_alert_open')
        batch_op.drop_index(batch_op.f('ix_manager_alert_contact_id'))
    op.drop_table('manager_alert')

    with op.batch_alter_table('nps_survey', schema=None) as batch_op:
        batch_op.drop_index('ix_nps_survey_customer')
        batch_op.drop_column('follow_up_done_at')
        batch_op.drop_column('answered_at')
        batch_op.drop_column('opened_at')

    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('survey_question')
        batch_op.drop_column('survey_thank_on_resolve')
        batch_op.drop_column('survey_cooldown_days')
        batch_op.drop_column('survey_ttl_hours')
        batch_op.drop_column('survey_enabled')
