"""web console: one-time sign-in links, Mini App initData already used, and the indexes of the contacts
page's filters (issue #26)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-15 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_link",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", models.base.BigIntPK, nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name="fk_console_link_user_id_user_account", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_console_link"),
    )
    op.create_index("ix_console_link_user_id", "console_link", ["user_id"])
    op.create_table(
        "console_init_seen",
        sa.Column("init_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("init_hash", name="pk_console_init_seen"),
    )
    op.create_index("ix_console_init_seen_expires_at", "console_init_seen", ["expires_at"])
    op.create_index("ix_contact_console_promoter", "contact", ["project_id", "promoter_id", "submitted_at"])
    op.create_index("ix_contact_console_verdict", "contact", ["project_id", "final_verdict", "submitted_at"])


def downgrade() -> None:
    op.drop_index("ix_contact_console_verdict", table_name="contact")
    op.drop_index("ix_contact_console_promoter", table_name="contact")
    op.drop_index("ix_console_init_seen_expires_at", table_name="console_init_seen")
    op.drop_table("console_init_seen")
    op.drop_index("ix_console_link_user_id", table_name="console_link")
    op.drop_table("console_link")
