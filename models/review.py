"""Reviewer work: assignments with deadlines, immutable reviews, disputes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models._types import str_enum
from models.base import Base, IdMixin, TimestampMixin, utcnow
from models.enums import AssignmentKind, AssignmentStatus, DisputeStatus, Verdict


class Assignment(IdMixin, TimestampMixin, Base):
    __tablename__ = "assignment"
    __table_args__ = (
        Index("ix_assignment_open", "status", "deadline_at"),
        Index("ix_assignment_reviewer_status", "reviewer_id", "status"),
    )

    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    kind: Mapped[AssignmentKind] = mapped_column(str_enum(AssignmentKind), default=AssignmentKind.PRIMARY)
    status: Mapped[AssignmentStatus] = mapped_column(
        str_enum(AssignmentStatus), default=AssignmentStatus.OPEN
    )
    attempt: Mapped[int] = mapped_column(default=1)
    assigned_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deadline_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    closed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # The card, so it can be edited in place (marks, expiry).
    chat_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    message_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    draft_marks: Mapped[dict[str, int]] = mapped_column(default=dict)  # criterion key -> mark
    draft_comment: Mapped[str | None] = mapped_column(Text, default=None)  # the reviewer's words, whole


class Review(IdMixin, TimestampMixin, Base):
    """Written once; an undo within the grace period marks it, never deletes it."""

    __tablename__ = "review"
    __table_args__ = (Index("ix_review_created", "created_at"),)  # digests and reports: reviews of a day

    # Not unique: an undone review stays, and the redone one sits beside it on the same assignment.
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    marks: Mapped[dict[str, Any]] = mapped_column(default=dict)
    score: Mapped[float] = mapped_column(default=0.0)
    verdict: Mapped[Verdict] = mapped_column(str_enum(Verdict))
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    undone_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Dispute(IdMixin, TimestampMixin, Base):
    __tablename__ = "dispute"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), unique=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    reason: Mapped[str] = mapped_column(String(2000))
    status: Mapped[DisputeStatus] = mapped_column(str_enum(DisputeStatus), default=DisputeStatus.OPEN)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    resolution_review_id: Mapped[int | None] = mapped_column(
        ForeignKey("review.id", ondelete="SET NULL"), default=None
    )
