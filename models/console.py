"""The web console's sign-in records, and the indexes its contact filters read (issue #26)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.contact import Contact


class ConsoleLink(Base):
    """A one-time sign-in link from `/console`: only its SHA-256 is kept, so a database dump opens nothing;
    `used_at` is set by a conditional UPDATE, so one link signs in once."""

    __tablename__ = "console_link"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ConsoleInitSeen(Base):
    """Mini App initData already used to sign in (its hash), kept until it would be stale anyway: a captured
    initData replayed within its freshness window is refused, in every process of the console."""

    __tablename__ = "console_init_seen"

    init_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


# The contacts page filters a project's period by promoter or by verdict, newest first (bench/console_bench.py).
Index("ix_contact_console_promoter", Contact.project_id, Contact.promoter_id, Contact.submitted_at)
Index("ix_contact_console_verdict", Contact.project_id, Contact.final_verdict, Contact.submitted_at)
# The global admin's contacts across all projects: newest first by one index walk, not one per project.
Index("ix_contact_submitted_at", Contact.submitted_at)
