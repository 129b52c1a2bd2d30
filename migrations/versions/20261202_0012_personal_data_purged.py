"""retention and erasure: when a contact's recording and personal answers were removed, and an index
to find the old contacts not purged yet

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 01:33:58.097095
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('personal_data_purged_at', models.base.UTCDateTime(timezone=True), nullable=True))
    op.create_index('ix_contact_unpurged', 'contact', ['project_id', 'personal_data_purged_at', 'submitted_at'])



def downgrade() -> None:
    op.drop_index('ix_contact_unpurged', table_name='contact')
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_column('personal_data_purged_at')

