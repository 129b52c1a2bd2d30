"""The console dashboard's roll-up (issue #26): per local day, project, promoter and store, the figures the
dashboard draws, kept so that its weeks, days and breakdowns read a few rows per day instead of every
contact of eight weeks (over 1 s at 1,000,000 contacts, docs/benchmarks.md).

Kept like billing's (models/billing.py): a day is rolled up once (`DashboardRollup`, with the zone it was
counted in), and marked stale (`DashboardStale`) by any flush that changes its figures after it may have
been rolled up; the dashboard reads stale, missing and still-open days from the contacts.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class DashboardDay(Base):
    """One (project, local day, promoter, store): its contacts' figures by the day they were submitted, and,
    by the day they happened, the cards that expired and the customers' answers that came (the daily view
    counts those on their own day, the breakdowns an answer for the contact it rates)."""

    __tablename__ = "dashboard_day"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    day: Mapped[dt.date] = mapped_column(Date(), primary_key=True)
    promoter_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    store: Mapped[str] = mapped_column(Text(), primary_key=True)  # the form's answer as text, "—" if none
    # contacts submitted on the day
    volume: Mapped[int] = mapped_column(Integer, default=0)
    reviewed: Mapped[int] = mapped_column(Integer, default=0)
    approved: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    fraud: Mapped[int] = mapped_column(Integer, default=0)
    automatic: Mapped[int] = mapped_column(Integer, default=0)
    rated_answers: Mapped[int] = mapped_column(Integer, default=0)  # customers' answers to those contacts
    rated_promoters: Mapped[int] = mapped_column(Integer, default=0)
    rated_detractors: Mapped[int] = mapped_column(Integer, default=0)
    # what happened on the day, to contacts of this promoter and store
    sla_breaches: Mapped[int] = mapped_column(Integer, default=0)
    answers: Mapped[int] = mapped_column(Integer, default=0)
    answer_promoters: Mapped[int] = mapped_column(Integer, default=0)
    answer_detractors: Mapped[int] = mapped_column(Integer, default=0)


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
