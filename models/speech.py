"""What speech routing keeps about a project beyond its settings (issue #25 item 4)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, IdMixin


class CriterionReturn(IdMixin, Base):
    """A scorecard criterion handed back to people on a project: while `restored_at` is empty, every contact
    whose speech report checks it goes to a reviewer (services/speech/routing.py, reason "criterion:<key>").
    Written when the daily digest finds reviewers' audit verdicts disagreeing with the machine's checks on
    it below the project's bar; closed when they agree again (`restored_by` "measured") or a manager brings
    it back (`fieldcheck speech restore`, "manager"). Rows are never deleted: the history of a criterion."""

    __tablename__ = "criterion_return"
    __table_args__ = (Index("ix_criterion_return_project_criterion", "project_id", "criterion"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    criterion: Mapped[str] = mapped_column(String(64))  # the scorecard criterion's key
    returned_at: Mapped[dt.datetime]
    agreement: Mapped[float]  # audit agreement on the criterion when it was returned
    pairs: Mapped[int]  # the audit pairs that agreement was measured on
    restored_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    restored_by: Mapped[str | None] = mapped_column(String(16), default=None)  # "measured" / "manager"
    restored_agreement: Mapped[float | None] = mapped_column(default=None)
    restored_pairs: Mapped[int | None] = mapped_column(default=None)
