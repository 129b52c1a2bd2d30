"""The console dashboard's roll-up (issue #26): per local day and project, and per promoter and per store
of it, the figures the dashboard draws, kept so that its weeks, days and breakdowns read a few rows per day
instead of every contact of eight weeks (over 1 s at 1,000,000 contacts, docs/benchmarks.md). Counted
together per (project, promoter, store) and stored as these three sums: the dashboard never shows the
pairs, and one promoter's contacts spread over many stores made the pairs nearly as many rows as contacts.

Kept like billing's (models/billing.py): a day is rolled up once (`DashboardRollup`, with the zone it was
counted in), and marked stale (`DashboardStale`) by any flush that changes its figures after it may have
been rolled up; the dashboard reads stale, missing and still-open days from the contacts.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.nps import NpsAnswer
from models.review import Assignment


class _ContactFigures:
    """The counters of the contacts submitted on a day (the breakdowns': an answer counts for the contact
    it rates)."""

    volume: Mapped[int] = mapped_column(Integer, default=0)
    reviewed: Mapped[int] = mapped_column(Integer, default=0)
    approved: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    fraud: Mapped[int] = mapped_column(Integer, default=0)
    automatic: Mapped[int] = mapped_column(Integer, default=0)
    rated_answers: Mapped[int] = mapped_column(Integer, default=0)
    rated_promoters: Mapped[int] = mapped_column(Integer, default=0)
    rated_detractors: Mapped[int] = mapped_column(Integer, default=0)


class DashboardDay(_ContactFigures, Base):
    """A project's local day: its contacts' figures, and what happened on the day (cards that expired,
    customers' answers that came: the daily view counts those on their own day)."""

    __tablename__ = "dashboard_day"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    day: Mapped[dt.date] = mapped_column(Date(), primary_key=True)
    sla_breaches: Mapped[int] = mapped_column(Integer, default=0)
    answers: Mapped[int] = mapped_column(Integer, default=0)
    answer_promoters: Mapped[int] = mapped_column(Integer, default=0)
    answer_detractors: Mapped[int] = mapped_column(Integer, default=0)


class DashboardPromoterDay(_ContactFigures, Base):
    """A project's local day, one promoter's contacts (the breakdown per promoter)."""

    __tablename__ = "dashboard_promoter_day"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    day: Mapped[dt.date] = mapped_column(Date(), primary_key=True)
    promoter_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )


class DashboardStoreDay(_ContactFigures, Base):
    """A project's local day, one store's contacts (the form's answer as text, "—" if none)."""

    __tablename__ = "dashboard_store_day"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    day: Mapped[dt.date] = mapped_column(Date(), primary_key=True)
    store: Mapped[str] = mapped_column(Text(), primary_key=True)


class DashboardRollup(Base):
    """A local day whose DashboardDay rows are complete, in the time zone they were counted in."""

    __tablename__ = "dashboard_rollup"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    day: Mapped[dt.date] = mapped_column(Date(), primary_key=True)
    timezone: Mapped[str] = mapped_column(Text())
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DashboardStale(Base):
    """A UTC day whose figures changed after its roll-up may have been written. `version` grows with every
    mark, so a refresh clears only the marks it has seen."""

    __tablename__ = "dashboard_stale"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    utc_day: Mapped[dt.date] = mapped_column(Date(), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


# The open day is read live: its expired cards and its customers' answers by their own time, not by a walk
# of every card or survey of the project (188 ms of a manager's 236 ms at 1,000,000 contacts without it).
Index("ix_assignment_status_closed", Assignment.status, Assignment.closed_at)
Index("ix_nps_answer_created", NpsAnswer.created_at)
