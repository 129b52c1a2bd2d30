"""analysis wait: queued contacts wait (a bounded time) for their voice analysis before review

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 21:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('analysis_wait_minutes', sa.Integer(), server_default='10', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('analysis_wait_minutes')
