"""The console dashboard's roll-up (models/dashboard.py): its figures per local day, project, promoter and
store, so the weeks, days and breakdowns read a few rows per day instead of eight weeks of contacts.

Kept like billing's (services/billing.py), with one difference: only closed days are rolled up, a day at
least `SETTLE` after its local midnight, and the dashboard reads the still-open day(s) from the contacts.
A closed day's figures can still change (a review, an undo, a dispute's re-review, a customer's answer to
an older contact): any flush that changes them marks the UTC day of what changed in `dashboard_stale`
(`mark_changed_days` and `write_marks`, listeners declared on the project's session class where it is
defined, services/unit_of_work.FieldcheckSession: every session of the bot, jobs and CLI), and a stale day is read from the contacts
until the next refresh rolls it up again. Changes stamped "now" (a new contact, a card expiring now, an
answer arriving) land on the open day and mark nothing, so intake writes no extra row; a change is marked
only when its day may already be rolled up (its moment more than `MARK_AFTER` ago; SETTLE - MARK_AFTER is
the slack for a transaction that commits late).

How far back: the scheduler (`jobs.housekeeping.roll_up_dashboard`) keeps the last `RECENT_DAYS` closed
days rolled up, the longest period the console offers (92 days; the weekly view needs 56); older days are
read from the contacts, as before. Each refresh rolls up the missing and stale days of that window, a few
days per short write transaction, and is idempotent: a day is deleted and written whole. Bulk SQL that
changes contacts, cards or answers without the ORM (none does) would have to call `mark_stale`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Date, cast, delete, func, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session, UOWTransaction

from infra.db import Database
from models import (
    Assignment,
    AssignmentStatus,
    Contact,
    DashboardDay,
    DashboardPromoterDay,
    DashboardRollup,
    DashboardStale,
    DashboardStoreDay,
    NpsAnswer,
    NpsSurvey,
    Project,
)
from models.base import utcnow
from services.billing import (
    clear_marks,
    days_between,
    local_days_of,
    mark_days_stale,
    offset_spans,
    period,
    roll_up_in_batches,
    runs,
    write_flush_marks,
)
from services.console_figures import NO_STORE, answer_sums, as_date, store_of, verdict_sums
from services.period_queries import sla_breaches_in, submitted_in

log = structlog.get_logger(__name__)

RECENT_DAYS = 92  # closed days kept rolled up: the console's longest period (the weekly view reads 56)
SETTLE = dt.timedelta(minutes=15)  # a local day is rolled up only this long after it ended
MARK_AFTER = dt.timedelta(minutes=5)  # a change stamped earlier than this may hit a rolled-up day
PROGRESS_EVERY_SECONDS = 10.0

# The counters in the order count_days() returns them: the contacts' (every roll-up table has them; their
# verdicts first, in the console's Tally order), then what happened on the day (DashboardDay's own).
VERDICT_FIGURES = ("volume", "reviewed", "approved", "rejected", "fraud", "automatic")
CONTACT_FIGURES = (*VERDICT_FIGURES, "rated_answers", "rated_promoters", "rated_detractors")
DAY_FIGURES = ("sla_breaches", "answers", "answer_promoters", "answer_detractors")
COUNTERS = (*CONTACT_FIGURES, *DAY_FIGURES)
Key = tuple[dt.date, int, str]  # (local day, promoter, store)
Figures = dict[Key, list[int]]


# -- stale marks ------------------------------------------------------------------------------------------
def mark_changed_days(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    """before_flush (on services.unit_of_work.FieldcheckSession): the (project, UTC day)s this flush
    changes that may already be rolled up, kept in the session until `write_marks`."""
    edge = utcnow() - MARK_AFTER
    marks: set[tuple[int, dt.date]] = session.info.setdefault("dashboard_stale", set())

    def mark(project_id: int | None, moment: dt.datetime | None) -> None:
        if project_id is not None and moment is not None and moment < edge:
            marks.add((project_id, moment.astimezone(dt.UTC).date()))

    def old_and_new(obj: Any, name: str) -> list[Any]:
        """The value before this flush's change, if any, and now (loaded if it was expired)."""
        return [*inspect(obj).attrs[name].history.deleted, getattr(obj, name)]

    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Contact):
            moved = obj in session.new or obj in session.deleted
            if not moved and not any(
                inspect(obj).attrs[name].history.has_changes()
                for name in (
                    "final_verdict",
                    "routed_to",
                    "submitted_at",
                    "form_answers",
                    "promoter_id",
                    "project_id",
                )
            ):
                continue
            for project_id in old_and_new(obj, "project_id"):
                for moment in old_and_new(obj, "submitted_at"):
                    mark(project_id, moment)
        elif isinstance(obj, NpsAnswer):
            if not (obj in session.new or obj in session.deleted) and not any(
                inspect(obj).attrs[name].history.has_changes()
                for name in ("category", "created_at", "survey_id")
            ):
                continue
            with session.no_autoflush:
                survey = session.get(NpsSurvey, obj.survey_id)
                rated = session.get(Contact, survey.contact_id) if survey is not None else None
            if survey is not None:
                mark(survey.project_id, obj.created_at)  # the daily view: the day it came
            if rated is not None:
                mark(rated.project_id, rated.submitted_at)  # the breakdowns: the contact it rates
        elif isinstance(obj, Assignment):
            expired = AssignmentStatus.EXPIRED in old_and_new(obj, "status")
            moments = [m for m in old_and_new(obj, "closed_at") if m is not None and m < edge]
            if expired and moments:
                with session.no_autoflush:
                    contact = session.get(Contact, obj.contact_id)
                for moment in moments:
                    mark(contact.project_id if contact is not None else None, moment)


def write_marks(session: Session, _flush: UOWTransaction) -> None:
    """after_flush (on services.unit_of_work.FieldcheckSession): the marks upserted in the flush's
    transaction."""
    write_flush_marks(session, "dashboard_stale", DashboardStale)


async def mark_stale(session: AsyncSession, project_id: int, utc_days: Iterable[dt.date]) -> None:
    """For writes that bypass the ORM: their UTC days are read from the contacts until rolled up again."""
    await mark_days_stale(session, DashboardStale, project_id, utc_days)


# -- which days are fresh ---------------------------------------------------------------------------------
async def fresh_days(
    connection: AsyncConnection, project_ids: Iterable[int], start: dt.date, end: dt.date, zone: str
) -> tuple[dict[int, set[dt.date]], dict[tuple[int, dt.date], int]]:
    """Per project, the days of [start, end] rolled up in `zone` and not marked stale since; and the marks
    seen ((project, UTC day): version), read before the roll-ups so that a refresh clears only those."""
    ids = sorted(set(project_ids))
    if not ids or end < start:
        return {}, {}
    marks = await connection.execute(
        select(DashboardStale.project_id, DashboardStale.utc_day, DashboardStale.version).where(
            DashboardStale.project_id.in_(ids),
            DashboardStale.utc_day >= start - dt.timedelta(days=1),
            DashboardStale.utc_day <= end + dt.timedelta(days=1),
        )
    )
    seen = {(int(pid), as_date(day)): int(version) for pid, day, version in marks.all()}
    rolled = await connection.execute(
        select(DashboardRollup.project_id, DashboardRollup.day).where(
            DashboardRollup.project_id.in_(ids),
            DashboardRollup.day >= start,
            DashboardRollup.day <= end,
            DashboardRollup.timezone == zone,
        )
    )
    fresh: dict[int, set[dt.date]] = {}
    for pid, day in rolled.all():
        fresh.setdefault(int(pid), set()).add(as_date(day))
    tz = ZoneInfo(zone)
    for pid, utc_day in seen:
        if pid in fresh:
            fresh[pid] -= local_days_of(utc_day, tz)
    return {pid: days for pid, days in fresh.items() if days}, seen


# -- counting a day from the contacts ---------------------------------------------------------------------
def _local_date(dialect: str, column: Any, seconds: int) -> Any:
    """SQL for the local date of a UTC timestamp column at a fixed offset."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column) + dt.timedelta(seconds=seconds), Date)
    return func.date(column, f"{seconds:+d} seconds")


def _sum_into(total: list[int], numbers: list[int]) -> None:
    for at in range(len(total)):
        total[at] += numbers[at]


def _add(figures: Figures, rows: Iterable[Sequence[Any]], first: str) -> None:
    """Sum grouped rows (local day, promoter, store, *numbers) into `figures`, the numbers into the
    counters from `first` on."""
    at = COUNTERS.index(first)
    for day, promoter_id, store, *numbers in rows:
        row = figures.setdefault((as_date(day), int(promoter_id), str(store)), [0] * len(COUNTERS))
        for offset, value in enumerate(numbers):
            row[at + offset] += int(value or 0)


async def count_days(connection: AsyncConnection, project: Project, start: dt.date, end: dt.date) -> Figures:
    """The dashboard's figures of [start, end] (the project's local days) per (day, promoter, store), counted
    from the contacts as the live dashboard counts them: one grouped query of each kind per stretch of
    constant UTC offset (a DST change splits the period; each row still lands on its local day)."""
    dialect = connection.dialect.name
    zone = ZoneInfo(project.timezone)
    first, last = period(project, start, end)
    store = func.coalesce(store_of(dialect), NO_STORE)
    figures: Figures = {}
    for since, until, seconds in offset_spans(zone, first, last):
        submitted = (_local_date(dialect, Contact.submitted_at, seconds), Contact.promoter_id, store)
        contacts = (
            select(
                *submitted, func.count(), func.count(Contact.final_verdict), *verdict_sums(), *answer_sums()
            )
            .outerjoin(NpsSurvey, NpsSurvey.contact_id == Contact.id)
            .outerjoin(NpsAnswer, NpsAnswer.survey_id == NpsSurvey.id)
            .where(submitted_in(project.id, since, until))
            .group_by(*submitted)
        )
        _add(figures, (await connection.execute(contacts)).all(), "volume")
        closed = (_local_date(dialect, Assignment.closed_at, seconds), Contact.promoter_id, store)
        breaches = sla_breaches_in(project, since, until, *closed, func.count()).group_by(*closed)
        _add(figures, (await connection.execute(breaches)).all(), "sla_breaches")
        answered = (_local_date(dialect, NpsAnswer.created_at, seconds), Contact.promoter_id, store)
        answers = (
            select(*answered, *answer_sums())
            .select_from(NpsAnswer)
            .join(NpsSurvey, NpsSurvey.id == NpsAnswer.survey_id)
            .join(Contact, Contact.id == NpsSurvey.contact_id)
            .where(
                NpsSurvey.project_id == project.id,
                NpsAnswer.created_at >= since,
                NpsAnswer.created_at < until,
            )
            .group_by(*answered)
        )
        _add(figures, (await connection.execute(answers)).all(), "answers")
    return figures


# -- writing roll-ups -------------------------------------------------------------------------------------
async def _roll_up(session: AsyncSession, project: Project, days: list[dt.date]) -> None:
    """Count `days` from the contacts per (promoter, store) and store their sums per day, per promoter and
    per store, whole, inside the caller's write transaction (which holds the project's lock: the last
    roll-up written counted last)."""
    connection = await session.connection()
    figures: Figures = {}
    for first, last in runs(days):
        figures.update(await count_days(connection, project, first, last))
    per_day: dict[dt.date, list[int]] = {}
    per_promoter: dict[tuple[dt.date, int], list[int]] = {}
    per_store: dict[tuple[dt.date, str], list[int]] = {}
    contact_figures = len(CONTACT_FIGURES)
    for (day, promoter, store), numbers in figures.items():
        _sum_into(per_day.setdefault(day, [0] * len(COUNTERS)), numbers)
        if any(numbers[:contact_figures]):
            _sum_into(per_promoter.setdefault((day, promoter), [0] * contact_figures), numbers)
            _sum_into(per_store.setdefault((day, store), [0] * contact_figures), numbers)
    for table in (DashboardDay, DashboardPromoterDay, DashboardStoreDay, DashboardRollup):
        await session.execute(delete(table).where(table.project_id == project.id, table.day.in_(days)))
    for table, rows in (
        (
            DashboardDay,
            [{"day": day} | dict(zip(COUNTERS, n, strict=True)) for day, n in per_day.items()],
        ),
        (
            DashboardPromoterDay,
            [
                {"day": day, "promoter_id": promoter} | dict(zip(CONTACT_FIGURES, n, strict=True))
                for (day, promoter), n in per_promoter.items()
            ],
        ),
        (
            DashboardStoreDay,
            [
                {"day": day, "store": store} | dict(zip(CONTACT_FIGURES, n, strict=True))
                for (day, store), n in per_store.items()
            ],
        ),
    ):
        if rows:
            await session.execute(insert(table), [{"project_id": project.id} | row for row in rows])
    session.add_all(
        [DashboardRollup(project_id=project.id, day=day, timezone=project.timezone) for day in days]
    )
    await session.flush()


def closed_range(project: Project, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """The window the scheduler keeps rolled up: the last RECENT_DAYS local days that ended SETTLE ago."""
    last = (now - SETTLE).astimezone(ZoneInfo(project.timezone)).date() - dt.timedelta(days=1)
    return last - dt.timedelta(days=RECENT_DAYS - 1), last


async def refresh(
    db: Database, project_id: int, start: dt.date, end: dt.date, *, now: dt.datetime | None = None
) -> int:
    """Roll up the days of [start, end] that are missing or stale, never one still open (see closed_range);
    returns how many days were written. Idempotent: a day is counted and written whole, and a day already
    fresh is left alone. The stale marks are read before anything is counted and cleared only at the
    version seen, so a change that lands meanwhile keeps its day stale. Logs its progress every
    PROGRESS_EVERY_SECONDS (a first roll-up of 92 days over a busy project takes a while)."""
    async with db.read_session() as reading:
        project = await reading.get(Project, project_id)
        if project is None:
            return 0
        end = min(end, closed_range(project, now or utcnow())[1])
        fresh, seen = await fresh_days(await reading.connection(), [project_id], start, end, project.timezone)
    zone = ZoneInfo(project.timezone)
    touched = {local for (_pid, utc_day) in seen for local in local_days_of(utc_day, zone)}
    todo = sorted(
        (set(days_between(start, end)) - fresh.get(project_id, set()))
        | {d for d in touched if start <= d <= end}
    )
    if not todo:
        return 0
    began = last_said = time.monotonic()

    def progress(written: set[dt.date]) -> None:
        nonlocal last_said
        if time.monotonic() - last_said >= PROGRESS_EVERY_SECONDS:
            last_said = time.monotonic()
            log.info(
                "dashboard_rollup_progress",
                project=project_id,
                done=len(written),
                of=len(todo),
                seconds=round(last_said - began, 1),
            )

    written, complete = await roll_up_in_batches(
        db, project, todo, _roll_up, log=log, raced_event="dashboard_rollup_raced", progress=progress
    )
    if not complete:
        return len(written)  # changed meanwhile: the next refresh starts over
    # A mark is spent once each local day it touches is rolled up anew, or still open (rolled up only
    # after it closes, from everything committed by then).
    cleared = [
        (day, version)
        for (_pid, day), version in seen.items()
        if all(local in written or local > end for local in local_days_of(day, zone))
    ]
    await clear_marks(db, DashboardStale, project_id, cleared)
    log.info(
        "dashboard_rolled_up",
        project=project_id,
        days=len(written),
        first=todo[0].isoformat(),
        seconds=round(time.monotonic() - began, 1),
    )
    return len(written)
