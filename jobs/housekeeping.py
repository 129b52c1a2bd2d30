"""Daily clean-up of bookkeeping rows that only matter for a short while, the query planner's statistics
on SQLite (PostgreSQL's autovacuum keeps its own), the billing and dashboard roll-ups, and digest charts
left in the blob store."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra import outbox
from infra.db import Database, off_loop
from infra.sql import dialect_of
from infra.storage import AudioStore
from models import Project
from services import billing, console_rollup, privacy
from services.updates import forget_processed_updates

log = structlog.get_logger(__name__)
# Telegram keeps undelivered updates for 24 hours; a week of ids covers any redelivery.
KEEP_UPDATE_IDS = dt.timedelta(days=7)


async def forget_old_updates(session_factory: async_sessionmaker[AsyncSession]) -> int:
    async with session_factory() as session, session.begin():
        await off_loop(session)  # a week's update ids: seconds of deleting
        removed = await forget_processed_updates(session, KEEP_UPDATE_IDS)
    log.info("processed_updates_forgotten", removed=removed)
    return removed


async def refresh_statistics(session_factory: async_sessionmaker[AsyncSession]) -> bool:
    """SQLite plans a day's reviews well only with statistics: without them it walks every contact of the
    project (71 s instead of 2 s for a digest over a million contacts, docs/benchmarks.md)."""
    async with session_factory() as session:
        if dialect_of(session) != "sqlite":
            return False
        await off_loop(session)
        await session.execute(text("ANALYZE"))
        await session.commit()
    log.info("planner_statistics_refreshed")
    return True


async def roll_up_billing(db: Database, *, now: dt.datetime | None = None) -> int:
    """Keep the last two months of billing rolled up, so an export reads roll-ups instead of contacts."""
    return await _roll_up_active_projects(db, billing.recent_range, billing.refresh, now)


async def roll_up_dashboard(db: Database, *, now: dt.datetime | None = None) -> int:
    """Keep each project's last closed days rolled up for the console dashboard (console_rollup.RECENT_DAYS,
    missing and stale days only), so its weeks and breakdowns read roll-ups instead of contacts."""
    at = now or dt.datetime.now(dt.UTC)
    refresh = functools.partial(console_rollup.refresh, now=at)
    return await _roll_up_active_projects(db, console_rollup.closed_range, refresh, at)


async def _roll_up_active_projects(
    db: Database,
    recent: Callable[[Project, dt.datetime], tuple[dt.date, dt.date]],
    refresh: Callable[[Database, int, dt.date, dt.date], Awaitable[int]],
    now: dt.datetime | None,
) -> int:
    """Refresh the recent days of every active project's roll-ups (billing's or the dashboard's), a project
    at a time; returns the days written."""
    now = now or dt.datetime.now(dt.UTC)
    async with db.sessions() as session:
        projects = (await session.scalars(select(Project).where(Project.is_active))).all()
    written = 0
    for project in projects:
        start, end = recent(project, now)
        written += await refresh(db, project.id, start, end)
    return written


async def purge_personal_data(
    session_factory: async_sessionmaker[AsyncSession],
    audio_store: AudioStore,
    *,
    now: dt.datetime | None = None,
) -> privacy.Erased:
    """Each project's retention: recordings and personal answers of older contacts go, batch by batch
    (a short transaction each), until none is left or the run has done 20 batches."""
    total = privacy.Erased()
    for _ in range(20):
        async with session_factory() as session, session.begin():
            erased = await privacy.purge_expired(session, audio_store, now=now)
        if not erased.contacts_anonymised:
            break
        total += erased
    return total


async def purge_old_charts(
    db: Database,
    chart_store: AudioStore,
    *,
    retention: dt.timedelta,
    now: dt.datetime | None = None,
) -> int:
    """The safety net under the sender's own purge (jobs/outbox.OutboxSender._purge_charts): charts queued
    more than `retention` ago (CHART_RETENTION_DAYS) whose messages are all done leave the blob store (a
    delete that failed or was cut short by a crash, charts queued before charts were purged). A chart that
    a message still to be sent carries is never removed, however old. Returns how many were removed."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - retention
    async with db.read_session() as session:
        keys = await outbox.charts_done_before(session, cutoff)
    removed = 0
    for key in keys:
        removed += await asyncio.to_thread(chart_store.delete, key)
    if removed:
        log.info("old_charts_removed", removed=removed, looked_at=len(keys))
    return removed
