"""Period reports for managers (/report in the bot): the digest's figures over any run
of local days, and who and where they came from (per promoter, per store)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Contact, Project, Review, User, Verdict
from services.capacity import Capacity, capacity
from services.digest import DayFigures, day_figures, local_day
from services.period_queries import reviews_in, submitted_in
from services.surveys import nps_figures

TABLE_ROWS = 15  # rows per table in the chat; the exports carry everything
MAX_REPORT_DAYS = 366
NO_STORE = "—"  # contacts whose form has no store answer


class Period(StrEnum):
    TODAY = "today"
    YESTERDAY = "yesterday"
    WEEK = "7d"
    MONTH = "30d"
    THIS_MONTH = "month"


def period_days(period: Period, today: dt.date) -> tuple[dt.date, dt.date]:
    """First and last local day, both included."""
    return {
        Period.TODAY: (today, today),
        Period.YESTERDAY: (today - dt.timedelta(days=1), today - dt.timedelta(days=1)),
        Period.WEEK: (today - dt.timedelta(days=6), today),
        Period.MONTH: (today - dt.timedelta(days=29), today),
        Period.THIS_MONTH: (today.replace(day=1), today),
    }[period]


_DAY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})|(\d{4})-(\d{2})-(\d{2})")


def parse_day_range(text: str) -> tuple[dt.date, dt.date]:
    """ "01.11.2026 30.11.2026", "01.11.2026–30.11.2026", ISO dates, or one day: first and last day, in
    order, at most MAX_REPORT_DAYS apart. Anything else in the text is refused."""
    days = []
    for found in _DAY.finditer(text):
        d, m, y, iy, im, iday = found.groups()
        days.append(dt.date(int(iy), int(im), int(iday)) if iy else dt.date(int(y), int(m), int(d)))
    if _DAY.sub("", text).strip(" \t\n-–—.,:;") or not 1 <= len(days) <= 2:
        raise ValueError("one or two dates, DD.MM.YYYY")
    first, last = min(days), max(days)
    if (last - first).days >= MAX_REPORT_DAYS:
        raise ValueError("longer than a year")
    return first, last


@dataclass
class Row:
    """One promoter's or one store's contacts in the period."""

    name: str
    received: int
    reviewed: int
    approved: int

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.reviewed if self.reviewed else None


@dataclass
class Report:
    project_name: str
    first: dt.date
    last: dt.date
    figures: DayFigures
    promoters: list[Row]
    stores: list[Row]
    nps: float | None
    nps_responses: int
    capacity: Capacity | None = None  # the period's routing and the queue now (services/capacity.py)


async def build_report(
    session: AsyncSession, project: Project, first: dt.date, last: dt.date, *, now: dt.datetime | None = None
) -> Report:
    """`now`: when the queue's capacity is measured; the clock by default."""
    start, end = local_day(project, first)[0], local_day(project, last)[1]
    figures = await day_figures(session, project, start, end)
    # Counted like the figures above (contacts submitted in the period, reviews written in it), grouped
    # by the database: a month of a big project is hundreds of thousands of rows.
    store = func.coalesce(Contact.form_answers["store"].as_string(), NO_STORE)
    approved = func.sum(case((Review.verdict == Verdict.APPROVE, 1), else_=0))
    in_period = submitted_in(project.id, start, end)
    tables: dict[str, dict[object, Row]] = {"promoter": {}, "store": {}}
    for name, key in (("promoter", Contact.promoter_id), ("store", store)):
        table = tables[name]
        for value, n in (
            await session.execute(select(key, func.count()).where(in_period).group_by(key))
        ).all():
            table[value] = Row(str(value), int(n), 0, 0)
        written = reviews_in(project, start, end, key, func.count(), approved).group_by(key)
        for value, n, ok in (await session.execute(written)).all():
            row = table.setdefault(value, Row(str(value), 0, 0, 0))
            row.reviewed, row.approved = int(n), int(ok or 0)
    people = tables["promoter"]
    if people:
        for user in await session.scalars(select(User).where(User.id.in_([int(str(k)) for k in people]))):
            people[user.id].name = user.display_name
    promoters, stores = people, tables["store"]
    nps_rows = await nps_figures(session, project.id, start, end, verbatims=0)
    nps = nps_rows[0] if nps_rows else None

    def ordered(table: dict[object, Row]) -> list[Row]:
        return sorted(table.values(), key=lambda r: (-r.received, r.name))

    return Report(
        project_name=project.name,
        first=first,
        last=last,
        figures=figures,
        promoters=ordered(promoters),
        stores=ordered(stores),
        nps=nps.nps if nps else None,
        nps_responses=nps.responses if nps else 0,
        capacity=await capacity(session, project, start, end, now=now),
    )
