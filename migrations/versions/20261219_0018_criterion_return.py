"""speech routing: scorecard criteria handed back to people when the audit finds them below the bar (issue #25
item 4)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-19 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "criterion_return",
        sa.Column("id", models.base.BigIntPK, autoincrement=True, nullable=False),
        sa.Column("project_id", models.base.BigIntPK, nullable=False),
        sa.Column("criterion", sa.String(length=64), nullable=False),
        sa.Column("returned_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("agreement", sa.Float(), nullable=False),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.Column("restored_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("restored_by", sa.String(length=16), nullable=True),
        sa.Column("restored_agreement", sa.Float(), nullable=True),
        sa.Column("restored_pairs", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name="fk_criterion_return_project_id_project", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_criterion_return"),
    )
    op.create_index("ix_criterion_return_project_criterion", "criterion_return", ["project_id", "criterion"])


def downgrade() -> None:
    op.drop_index("ix_criterion_return_project_criterion", table_name="criterion_return")
    op.drop_table("criterion_return")
