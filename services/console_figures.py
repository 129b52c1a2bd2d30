"""SQL pieces that the console's live queries (services/console.py) and its dashboard roll-up
(services/console_rollup.py) both count with, so the two cannot drift apart."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal_column

from models import Contact, NpsAnswer, NpsCategory, Verdict
from services.speech.routing import AUTOMATIC

NO_STORE = "—"  # a contact whose form has no store answer


def store_of(dialect: str) -> Any:
    """The form's `store` answer as text, written literally so the same SQL serves every request."""
    if dialect == "postgresql":
        return literal_column("(contact.form_answers ->> 'store')")
    return literal_column("json_extract(contact.form_answers, '$.store')")


def utc_range(start: dt.date, end: dt.date, zone: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end] local days of `zone` as a UTC half-open range."""
    tz = ZoneInfo(zone)
    first = dt.datetime.combine(start, dt.time(0), tz).astimezone(dt.UTC)
    last = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), tz).astimezone(dt.UTC)
    return first, last


def day_of(column: Any, dialect: str, zone: str, at: dt.datetime) -> Any:
    """The local calendar day of a UTC timestamp column. SQLite knows no zones: the zone's offset at `at`
    shifts it (the console's own zones, Moscow's and its neighbours', keep one offset all year)."""
    if dialect == "postgresql":
        return func.date(func.timezone(zone, column))
    offset = ZoneInfo(zone).utcoffset(at.replace(tzinfo=None)) or dt.timedelta(0)
    return func.date(column, f"{int(offset.total_seconds()):+d} seconds")


def verdict_sums() -> list[Any]:
    """Approved, rejected, fraud and automatically decided contacts of a group (with a verdict)."""
    return [
        func.sum(case((Contact.final_verdict == Verdict.APPROVE, 1), else_=0)),
        func.sum(case((Contact.final_verdict == Verdict.REJECT, 1), else_=0)),
        func.sum(case((Contact.final_verdict == Verdict.FRAUD, 1), else_=0)),
        func.sum(
            case((and_(Contact.routed_to == AUTOMATIC, Contact.final_verdict.is_not(None)), 1), else_=0)
        ),
    ]


def answer_sums() -> list[Any]:
    """Customers' answers of a group: how many, promoters, detractors (an outer join's NULLs count none)."""
    answer = NpsAnswer.category
    return [
        func.count(answer),
        func.sum(case((answer == NpsCategory.PROMOTER, 1), else_=0)),
        func.sum(case((answer == NpsCategory.DETRACTOR, 1), else_=0)),
    ]


def as_date(value: Any) -> dt.date:
    """A DATE as the driver returns it: a date on PostgreSQL, ISO text on SQLite."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
