"""alerts for every kind: one dedupe key per alert, muted kinds and alert thresholds per project; indexes
for reading a day's contacts and reviews (digests, reports)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('manager_alert') as batch:
        batch.add_column(sa.Column('dedupe_key', sa.String(length=160), nullable=True))
        batch.create_unique_constraint(batch.f('uq_manager_alert_dedupe_key'), ['dedupe_key'])
    with op.batch_alter_table('project') as batch:
        batch.add_column(
            sa.Column(
                'muted_alerts',
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                server_default='[]',
                nullable=False,
            )
        )
        batch.add_column(sa.Column('rejections_before_alert', sa.Integer(), server_default='5', nullable=False))
        batch.add_column(sa.Column('backlog_alert_size', sa.Integer(), server_default='200', nullable=False))
        batch.add_column(sa.Column('idle_alert_minutes', sa.Integer(), server_default='60', nullable=False))
    op.create_index('ix_contact_project_submitted', 'contact', ['project_id', 'submitted_at'])
    op.create_index('ix_review_created', 'review', ['created_at'])
    op.create_index('ix_contact_calibration', 'contact', ['project_id', 'calibration', 'submitted_at'])


def downgrade() -> None:
    op.drop_index('ix_contact_calibration', table_name='contact')
    op.drop_index('ix_review_created', table_name='review')
    op.drop_index('ix_contact_project_submitted', table_name='contact')
    with op.batch_alter_table('project') as batch:
        batch.drop_column('idle_alert_minutes')
        batch.drop_column('backlog_alert_size')
        batch.drop_column('rejections_before_alert')
        batch.drop_column('muted_alerts')
    with op.batch_alter_table('manager_alert') as batch:
        batch.drop_constraint(batch.f('uq_manager_alert_dedupe_key'), type_='unique')
        batch.drop_column('dedupe_key')
