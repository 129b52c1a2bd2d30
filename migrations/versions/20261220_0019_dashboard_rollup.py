"""dashboard roll-up: the console dashboard's figures per local day and project, per promoter and per store,
the days rolled up, the UTC days whose roll-up a later change made stale, and indexes for the open day's
expired cards and answers (issue #26)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-20 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CONTACT_FIGURES = (
    "volume",
    "reviewed",
    "approved",
    "rejected",
    "fraud",
    "automatic",
    "rated_answers",
    "rated_promoters",
    "rated_detractors",
)
_DAY_FIGURES = ("sla_breaches", "answers", "answer_promoters", "answer_detractors")


def _project_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id"], ["project.id"], name=op.f(f"fk_{table}_project_id_project"), ondelete="CASCADE"
    )


def _counters(names: Sequence[str]) -> list[sa.Column]:
    return [sa.Column(name, sa.Integer(), nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "dashboard_day",
        sa.Column("project_id", _ID, autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_counters(_CONTACT_FIGURES + _DAY_FIGURES),
        _project_fk("dashboard_day"),
        sa.PrimaryKeyConstraint("project_id", "day", name=op.f("pk_dashboard_day")),
    )
    op.create_table(
        "dashboard_promoter_day",
        sa.Column("project_id", _ID, autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("promoter_id", _ID, autoincrement=False, nullable=False),
        *_counters(_CONTACT_FIGURES),
        _project_fk("dashboard_promoter_day"),
        sa.ForeignKeyConstraint(
            ["promoter_id"],
            ["user_account.id"],
            name=op.f("fk_dashboard_promoter_day_promoter_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "day", "promoter_id", name=op.f("pk_dashboard_promoter_day")),
    )
    op.create_table(
        "dashboard_store_day",
        sa.Column("project_id", _ID, autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("store", sa.Text(), nullable=False),
        *_counters(_CONTACT_FIGURES),
        _project_fk("dashboard_store_day"),
        sa.PrimaryKeyConstraint("project_id", "day", "store", name=op.f("pk_dashboard_store_day")),
    )
    op.create_table(
        "dashboard_rollup",
        sa.Column("project_id", _ID, autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("computed_at", models.base.UTCDateTime(timezone=True), nullable=False),
        _project_fk("dashboard_rollup"),
        sa.PrimaryKeyConstraint("project_id", "day", name=op.f("pk_dashboard_rollup")),
    )
    op.create_table(
        "dashboard_stale",
        sa.Column("project_id", _ID, autoincrement=False, nullable=False),
        sa.Column("utc_day", sa.Date(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _project_fk("dashboard_stale"),
        sa.PrimaryKeyConstraint("project_id", "utc_day", name=op.f("pk_dashboard_stale")),
    )
    # The open day is read live: its expired cards and answers by their own time.
    op.create_index("ix_assignment_status_closed", "assignment", ["status", "closed_at"])
    op.create_index("ix_nps_answer_created", "nps_answer", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_nps_answer_created", table_name="nps_answer")
    op.drop_index("ix_assignment_status_closed", table_name="assignment")
    for table in (
        "dashboard_stale",
        "dashboard_rollup",
        "dashboard_store_day",
        "dashboard_promoter_day",
        "dashboard_day",
    ):
        op.drop_table(table)
