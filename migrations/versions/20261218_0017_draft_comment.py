"""review drafts: the reviewer's comment in its own column instead of a "_comment" key in the marks (#28 item 4)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-18 09:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The table as this revision knows it (never the models, which move on).
_assignment = sa.table(
    "assignment",
    sa.column("id", sa.BigInteger),
    sa.column("draft_marks", sa.JSON().with_variant(JSONB(), "postgresql")),
    sa.column("draft_comment", sa.Text),
)
_KEY = "_comment"


def _drafts_with_comment(bind: sa.Connection) -> list[tuple[int, dict[str, Any]]]:
    """Only rows whose marks mention the key are read (a text match, the same on both backends)."""
    rows = bind.execute(
        sa.select(_assignment.c.id, _assignment.c.draft_marks).where(
            sa.cast(_assignment.c.draft_marks, sa.Text).like(f'%"{_KEY}"%')
        )
    )
    return [(int(row.id), dict(row.draft_marks)) for row in rows if _KEY in (row.draft_marks or {})]


def upgrade() -> None:
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("draft_comment", sa.Text(), nullable=True))
    bind = op.get_bind()
    for assignment_id, marks in _drafts_with_comment(bind):
        comment = marks.pop(_KEY)
        bind.execute(
            sa.update(_assignment)
            .where(_assignment.c.id == assignment_id)
            .values(draft_marks=marks, draft_comment=str(comment) if comment is not None else None)
        )


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_assignment.c.id, _assignment.c.draft_marks, _assignment.c.draft_comment).where(
            _assignment.c.draft_comment.is_not(None)
        )
    )
    for row in list(rows):
        bind.execute(
            sa.update(_assignment)
            .where(_assignment.c.id == row.id)
            .values(draft_marks={**(row.draft_marks or {}), _KEY: row.draft_comment})
        )
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.drop_column("draft_comment")
