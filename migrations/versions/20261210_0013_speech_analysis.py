"""speech analysis: a project's speech settings (off by default) and each analysis's transcript, checks and
automatic verdict

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("speech_settings", JSON, server_default="{}", nullable=False))
    with op.batch_alter_table("analysis_task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("speech", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analysis_task", schema=None) as batch_op:
        batch_op.drop_column("speech")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("speech_settings")
