"""speech verdict: projects that already analyse speech keep the band their verdicts were made under

The verdict's default became one pass mark (more than half the script approves, half or less rejects:
services/speech/verdict.py). A project that already had speech analysis on keeps the rules it ran with until
its managers choose otherwise (`fieldcheck admin configure N --approve-share 0.6 --reject-share 0.5`), so no
deployed project starts rejecting middling scripts automatically because of an upgrade.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-21 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The table as this revision knows it (never the models, which move on).
_project = sa.table(
    "project",
    sa.column("id", sa.BigInteger),
    sa.column("speech_settings", sa.JSON().with_variant(JSONB(), "postgresql")),
)
# The defaults before this revision.
_BAND = {"approve_share": 0.75, "reject_share": 0.35}


def upgrade() -> None:
    bind = op.get_bind()
    rows = list(bind.execute(sa.select(_project.c.id, _project.c.speech_settings)))
    for row in rows:
        settings = dict(row.speech_settings or {})
        if not settings.get("enabled"):
            continue  # speech off: it has made no verdict yet, and takes today's default when turned on
        verdict = dict(settings.get("verdict") or {})
        settings["verdict"] = {**_BAND, **verdict}  # shares the project set itself stay
        if settings["verdict"] != verdict:
            bind.execute(sa.update(_project).where(_project.c.id == row.id).values(speech_settings=settings))


def downgrade() -> None:
    # Nothing to undo: before this revision the same two values were the defaults, so the rows written by
    # upgrade() decide exactly as the old code decided without them.
    pass
