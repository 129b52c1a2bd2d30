"""web console: contact.submitted_at alone, for the global admin's contacts across all projects (issue #26)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-17 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_contact_submitted_at", "contact", ["submitted_at"])


def downgrade() -> None:
    op.drop_index("ix_contact_submitted_at", table_name="contact")
