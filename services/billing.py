"""Billing: validated contacts per local day, promoter and store, what the client pays for.

A month over a million contacts took 4.5-9.5 s to group on SQLite; billing now reads a roll-up
(models/billing.py) for every day that has one and is not stale, and groups only the rest from the
contacts. Any flush that changes a contact's status or verdict marks its UTC day stale (`TrackedSession`),
so a roll-up can never hide a review, an undo or a settled dispute: stale and missing days are always
counted from the contacts. `refresh` writes roll-ups (the scheduler runs it every half hour and exports
run it first), a few days per short write transaction.

Bulk SQL that changes contacts without the ORM (none today) would bypass the marks: mark_stale() it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Date, Insert, and_, cast, delete, event, func, insert, inspect, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session, UOWTransaction

from infra.db import Database, off_loop
from models import (
    BillingDay,
    BillingRollup,
    BillingStale,
    Contact,
    ContactStatus,
    DashboardStale,
    Project,
    User,
    Verdict,
)

log = structlog.get_logger(__name__)

# "Validated" = what the client pays for: approved (not rejected, not fraud), and not under dispute now.
VALIDATED = (Contact.final_verdict == Verdict.APPROVE) & Contact.status.in_(
    [ContactStatus.REVIEWED, ContactStatus.FINAL]
)
NO_STORE = "—"
DAYS_PER_TRANSACTION = 3  # SQLite: about 0.15 s of write lock per day at 35,000 contacts a day
RECENT_DAYS = 62  # what the scheduled refresh keeps rolled up: this month and the last one

Counts = dict[tuple[dt.date, int, str], int]


class TrackedSession(Session):
    """The ORM session of every update and job: it marks billing days stale as contacts change (the two
    listeners below, declared on the class here, once, when this module is imported; the unit of work's
    FieldcheckSession is built on it)."""


@event.listens_for(TrackedSession, "before_flush")
def _changed_days(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    marks: set[tuple[int, dt.date]] = session.info.setdefault("billing_stale", set())
    for obj in (*session.new, *session.dirty, *session.deleted):
        if not isinstance(obj, Contact) or obj.submitted_at is None:
            continue
        state = inspect(obj)
        if (
            obj in session.deleted
            or (obj in session.new and obj.final_verdict is not None)
            or state.attrs.status.history.has_changes()
            or state.attrs.final_verdict.history.has_changes()
        ):
            marks.add((obj.project_id, obj.submitted_at.astimezone(dt.UTC).date()))


@event.listens_for(TrackedSession, "after_flush")
def _write_marks(session: Session, _flush: UOWTransaction) -> None:
    write_flush_marks(session, "billing_stale", BillingStale)


# A roll-up's table of stale (project, UTC day) marks: billing's or the dashboard's, the same three columns.
StaleTable = type[BillingStale] | type[DashboardStale]


def write_flush_marks(session: Session, key: str, table: StaleTable) -> None:
    """after_flush of a roll-up (billing's, the dashboard's): the marks its before_flush listener gathered in
    `session.info[key]`, upserted in the flush's own transaction."""
    marks = session.info.pop(key, None)
    if marks:
        connection = session.connection()
        connection.execute(stale_mark_statement(table, connection.dialect.name, marks))


def stale_mark_statement(table: StaleTable, dialect: str, marks: Iterable[tuple[int, dt.date]]) -> Insert:
    """Mark (project, UTC day)s stale in a roll-up's stale table (billing's, the dashboard's): a new mark
    or its version bumped, so a roll-up running meanwhile clears only the version it saw."""
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = upsert(table).values(
        [{"project_id": project_id, "utc_day": day, "version": 1} for project_id, day in sorted(marks)]
    )
    return statement.on_conflict_do_update(
        index_elements=[table.project_id, table.utc_day],
        set_={"version": table.version + 1},
    )


async def mark_stale(session: AsyncSession, project_id: int, days: Iterable[dt.date]) -> None:
    await mark_days_stale(session, BillingStale, project_id, days)


async def mark_days_stale(
    session: AsyncSession, table: StaleTable, project_id: int, utc_days: Iterable[dt.date]
) -> None:
    """Mark a project's UTC days stale in a roll-up's stale table, for writes that bypass the ORM (and so
    its flush listeners)."""
    marks = {(project_id, day) for day in utc_days}
    if marks:
        connection = await session.connection()
        await connection.execute(stale_mark_statement(table, connection.dialect.name, marks))


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day of [start, end]."""
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def local_days_of(utc_day: dt.date, zone: ZoneInfo) -> set[dt.date]:
    """The local days that a UTC day overlaps (one or two)."""
    begin = dt.datetime.combine(utc_day, dt.time(0), dt.UTC)
    return {
        begin.astimezone(zone).date(),
        (begin + dt.timedelta(days=1) - dt.timedelta(microseconds=1)).astimezone(zone).date(),
    }


def runs(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Consecutive days as (first, last) ranges, so each is one grouped query (one range in SQL)."""
    found: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if found and day == found[-1][1] + dt.timedelta(days=1):
            found[-1] = (found[-1][0], day)
        else:
            found.append((day, day))
    return found


def period(project: Project, start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end] local days as a UTC half-open range."""
    zone = ZoneInfo(project.timezone)
    first = dt.datetime.combine(start, dt.time(0), zone).astimezone(dt.UTC)
    last = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), zone).astimezone(dt.UTC)
    return first, last


def offset_spans(
    zone: ZoneInfo, first: dt.datetime, last: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime, int]]:
    """[first, last) cut where the zone's UTC offset changes: (from, to, offset in seconds). Within a span
    a local day is the UTC time shifted by one constant, which the database can group by."""

    def offset(at: dt.datetime) -> int:
        delta = at.astimezone(zone).utcoffset()
        return int(delta.total_seconds()) if delta else 0

    spans: list[tuple[dt.datetime, dt.datetime, int]] = []
    begin, current = first, offset(first)
    cursor = first
    while cursor < last:
        step = min(last, cursor + dt.timedelta(hours=6))
        if offset(step) != current or step == last:
            if offset(step) != current:  # a transition inside (cursor, step]: find it to the minute
                low, high = cursor, step
                while high - low > dt.timedelta(minutes=1):
                    middle = low + (high - low) / 2
                    low, high = (middle, high) if offset(middle) == current else (low, middle)
                spans.append((begin, high, current))
                begin, current = high, offset(high)
            if step == last:
                spans.append((begin, last, current))
        cursor = step
    return [span for span in spans if span[0] < span[1]]


def _local_date(connection: AsyncConnection, seconds: int) -> Any:
    """SQL for the local date of Contact.submitted_at at a fixed UTC offset."""
    if connection.dialect.name == "postgresql":
        shifted = func.timezone("UTC", Contact.submitted_at) + dt.timedelta(seconds=seconds)
        return cast(shifted, Date)
    return func.date(Contact.submitted_at, f"{seconds:+d} seconds")


async def count_contacts(
    connection: AsyncConnection, project: Project, start: dt.date, end: dt.date
) -> Counts:
    """Validated contacts of [start, end] grouped by the database, one query per stretch of constant UTC
    offset (a DST change splits the period, and each contact still lands on its local day)."""
    first, last = period(project, start, end)
    store = func.coalesce(Contact.form_answers["store"].as_string(), NO_STORE)
    counts: Counts = {}
    for span_from, span_to, seconds in offset_spans(ZoneInfo(project.timezone), first, last):
        day = _local_date(connection, seconds)
        grouped = (
            select(day, Contact.promoter_id, store, func.count())
            .where(
                Contact.project_id == project.id,
                Contact.submitted_at >= span_from,
                Contact.submitted_at < span_to,
                VALIDATED,
            )
            .group_by(day, Contact.promoter_id, store)
        )
        for local, promoter_id, shop, n in (await connection.execute(grouped)).all():
            key = (
                local if isinstance(local, dt.date) else dt.date.fromisoformat(str(local)),
                int(promoter_id),
                str(shop),
            )
            counts[key] = counts.get(key, 0) + int(n)
    return counts


async def _stale(
    connection: AsyncConnection, project: Project, start: dt.date, end: dt.date
) -> dict[dt.date, int]:
    """UTC days marked stale around [start, end], with the version seen."""
    rows = await connection.execute(
        select(BillingStale.utc_day, BillingStale.version).where(
            BillingStale.project_id == project.id,
            BillingStale.utc_day >= start - dt.timedelta(days=1),
            BillingStale.utc_day <= end + dt.timedelta(days=1),
        )
    )
    return {_as_date(day): int(version) for day, version in rows.all()}


async def _fresh_days(
    connection: AsyncConnection, project: Project, start: dt.date, end: dt.date
) -> tuple[set[dt.date], dict[dt.date, int]]:
    """Days of [start, end] whose roll-up is complete, in the project's zone, and not marked stale; and the
    stale marks seen (UTC day: version), read before the roll-ups (see refresh())."""
    zone = ZoneInfo(project.timezone)
    marks = await _stale(connection, project, start, end)
    rolled = await connection.execute(
        select(BillingRollup.day).where(
            BillingRollup.project_id == project.id,
            BillingRollup.day >= start,
            BillingRollup.day <= end,
            BillingRollup.timezone == project.timezone,
        )
    )
    stale = {local for utc_day in marks for local in local_days_of(utc_day, zone)}
    return {_as_date(day) for (day,) in rolled.all()} - stale, marks


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


async def counts(connection: AsyncConnection, project: Project, start: dt.date, end: dt.date) -> Counts:
    """Validated contacts per (day, promoter, store): roll-ups where fresh, the contacts elsewhere."""
    fresh, _marks = await _fresh_days(connection, project, start, end)
    result: Counts = {}
    if fresh:
        rows = await connection.execute(
            select(BillingDay.day, BillingDay.promoter_id, BillingDay.store, BillingDay.validated).where(
                BillingDay.project_id == project.id, BillingDay.day >= start, BillingDay.day <= end
            )
        )
        for day, promoter_id, store, validated in rows.all():
            if (local := _as_date(day)) in fresh:
                result[(local, int(promoter_id), str(store))] = int(validated)
    for first, last in runs(set(days_between(start, end)) - fresh):
        result.update(await count_contacts(connection, project, first, last))
    return result


async def billing_rows(
    connection: AsyncConnection, project: Project, start: dt.date, end: dt.date
) -> AsyncIterator[tuple[Any, ...]]:
    """(local day, promoter, telegram id, store, validated count), sorted by day, promoter and store."""
    tallies = await counts(connection, project, start, end)
    names: dict[int, tuple[str, int]] = {}
    ids = sorted({promoter_id for _day, promoter_id, _store in tallies})
    for chunk in range(0, len(ids), 500):
        people = await connection.execute(
            select(User.id, User.first_name, User.last_name, User.telegram_id).where(
                User.id.in_(ids[chunk : chunk + 500])
            )
        )
        for user_id, first_name, last_name, telegram_id in people.all():
            names[user_id] = (" ".join(p for p in (first_name, last_name) if p), telegram_id)
    for (day, user_id, shop), count in sorted(
        tallies.items(), key=lambda kv: (kv[0][0], names[kv[0][1]][0], kv[0][2])
    ):
        name, telegram_id = names[user_id]
        yield day, name, telegram_id, shop, count


async def _roll_up(session: AsyncSession, project: Project, days: list[dt.date]) -> None:
    """Count `days` from the contacts and store them, inside the caller's write transaction (which holds the
    project's lock: counting and writing together, so the last roll-up written counted last)."""
    connection = await session.connection()
    tallies: Counts = {}
    for first, last in runs(days):
        tallies.update(await count_contacts(connection, project, first, last))
    await session.execute(
        delete(BillingDay).where(BillingDay.project_id == project.id, BillingDay.day.in_(days))
    )
    await session.execute(
        delete(BillingRollup).where(BillingRollup.project_id == project.id, BillingRollup.day.in_(days))
    )
    if tallies:
        await session.execute(
            insert(BillingDay),
            [
                {
                    "project_id": project.id,
                    "day": day,
                    "promoter_id": promoter,
                    "store": store,
                    "validated": n,
                }
                for (day, promoter, store), n in tallies.items()
            ],
        )
    session.add_all(
        [BillingRollup(project_id=project.id, day=day, timezone=project.timezone) for day in days]
    )
    await session.flush()


async def roll_up_in_batches(
    db: Database,
    project: Project,
    todo: list[dt.date],
    roll_up: Callable[[AsyncSession, Project, list[dt.date]], Awaitable[None]],
    *,
    log: structlog.stdlib.BoundLogger,
    raced_event: str,
    progress: Callable[[set[dt.date]], None] | None = None,
) -> tuple[set[dt.date], bool]:
    """Run `roll_up` over `todo` a few days per short write transaction, each holding the project's lock,
    for billing's roll-up and the dashboard's alike; returns the days written and whether it got through
    them all (not when the project went or changed its timezone meanwhile). A batch another process rolled
    up first is logged as `raced_event` and skipped; `progress` hears the days written after each batch."""
    written: set[dt.date] = set()
    for chunk in range(0, len(todo), DAYS_PER_TRANSACTION):
        days = todo[chunk : chunk + DAYS_PER_TRANSACTION]
        try:
            async with db.sessions() as session, session.begin():
                await off_loop(session)  # counts every contact of these days
                current = await session.get(Project, project.id)
                if current is None or current.timezone != project.timezone:
                    return written, False
                if (await session.connection()).dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE
                    # one refresh per project at a time, so the last roll-up written counted last
                    await session.execute(
                        select(Project.id).where(Project.id == project.id).with_for_update()
                    )
                await roll_up(session, current, days)
        except IntegrityError:  # another process rolled the same days up first
            log.info(raced_event, project=project.id, days=len(days))
            continue
        written.update(days)
        if progress is not None:
            progress(written)
    return written, True


async def clear_marks(
    db: Database, table: StaleTable, project_id: int, marks: list[tuple[dt.date, int]]
) -> None:
    """Delete a roll-up's stale marks that a refresh has spent, each only at the version it read: a change
    that landed meanwhile bumped its mark's version and so keeps its day stale."""
    if marks:
        async with db.sessions() as session, session.begin():
            await session.execute(
                delete(table).where(
                    table.project_id == project_id,
                    or_(*(and_(table.utc_day == d, table.version == v) for d, v in marks)),
                )
            )


async def refresh(db: Database, project_id: int, start: dt.date, end: dt.date) -> int:
    """Roll up the days of [start, end] that are missing or stale; returns how many days were written.

    The stale marks are read first, before anything is counted, and cleared at the end only at the version
    seen: a verdict that changes while the roll-up runs bumps its mark's version and keeps its day stale."""
    async with db.read_session() as reading:
        project = await reading.get(Project, project_id)
        if project is None:
            return 0
        fresh, seen = await _fresh_days(await reading.connection(), project, start, end)
    zone = ZoneInfo(project.timezone)
    touched = {local for utc_day in seen for local in local_days_of(utc_day, zone)}
    todo = sorted((set(days_between(start, end)) - fresh) | touched)
    written, complete = await roll_up_in_batches(
        db, project, todo, _roll_up, log=log, raced_event="billing_rollup_raced"
    )
    if not complete:
        return len(written)  # changed meanwhile: the next refresh starts over
    cleared = [(day, version) for day, version in seen.items() if local_days_of(day, zone) <= written]
    await clear_marks(db, BillingStale, project_id, cleared)
    if written:
        log.info("billing_rolled_up", project=project_id, days=len(written), first=todo[0].isoformat())
    return len(written)


def recent_range(project: Project, now: dt.datetime) -> tuple[dt.date, dt.date]:
    today = now.astimezone(ZoneInfo(project.timezone)).date()
    return today - dt.timedelta(days=RECENT_DAYS), today
