"""Billing roll-up: validated contacts per local day, promoter and store, kept so that a month's billing
reads a few thousand rows instead of a million contacts (issue #10's 2 s target).

A day is rolled up once (`BillingRollup`), and marked stale (`BillingStale`) by any flush that changes a
contact's verdict or status; billing recomputes stale and missing days from the contacts themselves.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class BillingDay(Base):
    __tablename__ = "billing_day"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    day: Mapped[dt.date] = mapped_column(Date(), primary_key=True)
    promoter_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    store: Mapped[str] = mapped_column(String(200), primary_key=True)
    validated: Mapped[int] = mapped_column(Integer)


class BillingRollup(Base):
    """A local day whose BillingDay rows are complete, in the time zone they were computed for."""

    __tablename__ = "billing_rollup"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    day: Mapped[dt.date] = mapped_column(Date(), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BillingStale(Base):
    """A UTC day with a contact whose verdict changed since its roll-up. `version` grows with every mark, so
    a roll-up clears only the marks it has seen (a change that lands during the roll-up stays marked)."""

    __tablename__ = "billing_stale"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    utc_day: Mapped[dt.date] = mapped_column(Date(), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
