"""Billing roll-ups: a month of billing reads them where they are fresh, and no review, dispute or undo is
ever hidden behind one (every change marks its day stale, and stale days are counted from the contacts)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import Database
from jobs import housekeeping
from models import BillingDay, BillingRollup, BillingStale, Contact, ContactStatus, Project, User, Verdict
from services import billing
from services.intake import open_dispute
from tests.helpers import add_contact, count_rows, seed_project

MOSCOW = dt.timezone(dt.timedelta(hours=3))
DAY = dt.date(2026, 11, 30)


async def seed(sessions: async_sessionmaker[AsyncSession], project_id: int) -> tuple[User, int]:
    """Pavel: 3 approved on DAY (10:00 Moscow), 1 rejected; 2 approved the day before. Returns Pavel and
    the id of one of DAY's approved contacts."""
    async with sessions() as session, session.begin():
        pavel = User(telegram_id=8101, first_name="Pavel")
        session.add(pavel)
        await session.flush()
        ids = []
        for day, verdict in (
            [(DAY, Verdict.APPROVE)] * 3
            + [(DAY, Verdict.REJECT)]
            + [(DAY - dt.timedelta(days=1), Verdict.APPROVE)] * 2
        ):
            contact, _ = await add_contact(session, project_id, pavel.id)
            contact.submitted_at = dt.datetime.combine(day, dt.time(10), MOSCOW)
            contact.reviewed_at = dt.datetime.now(dt.UTC)
            contact.form_answers = {"store": "Store 1"}
            contact.final_verdict, contact.status = verdict, ContactStatus.REVIEWED
            ids.append(contact.id)
    return pavel, ids[0]


async def bill(db: Database, sessions: async_sessionmaker[AsyncSession], project_id: int) -> list[Any]:
    async with sessions() as session:
        project = await session.get(Project, project_id)
        assert project is not None
    async with db.reader() as connection:
        return [
            (day, count)
            async for day, _name, _tg, _store, count in billing.billing_rows(
                connection, project, DAY - dt.timedelta(days=1), DAY
            )
        ]


async def test_billing_reads_fresh_rollups_and_counts_changed_days_from_the_contacts(
    db: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    pavel, disputed_id = await seed(sessions, project.id)
    expected = [(DAY - dt.timedelta(days=1), 2), (DAY, 3)]
    assert await bill(db, sessions, project.id) == expected  # nothing rolled up: counted live

    assert await billing.refresh(db, project.id, DAY - dt.timedelta(days=1), DAY) >= 2
    assert await count_rows(sessions, BillingRollup) >= 2 and await count_rows(sessions, BillingStale) == 0
    assert await bill(db, sessions, project.id) == expected
    # The roll-up is what billing reads for a fresh day: a changed roll-up row shows through.
    async with sessions() as session, session.begin():
        await session.execute(update(BillingDay).where(BillingDay.day == DAY).values(validated=30))
    assert await bill(db, sessions, project.id) == [(DAY - dt.timedelta(days=1), 2), (DAY, 30)]

    # A dispute (the real service) takes a contact out of what the client pays for: its day goes stale at
    # once and is counted from the contacts again, before any refresh.
    async with sessions() as session, session.begin():
        promoter = await session.get(User, pavel.id)
        assert promoter is not None
        await open_dispute(session, promoter, disputed_id, "the customer was real")
    assert await count_rows(sessions, BillingStale) == 1
    assert await bill(db, sessions, project.id) == [(DAY - dt.timedelta(days=1), 2), (DAY, 2)]

    assert await billing.refresh(db, project.id, DAY - dt.timedelta(days=1), DAY) >= 1
    assert await count_rows(sessions, BillingStale) == 0
    async with sessions() as session:
        stored = await session.scalar(select(BillingDay.validated).where(BillingDay.day == DAY))
    assert stored == 2 and await bill(db, sessions, project.id) == [
        (DAY - dt.timedelta(days=1), 2),
        (DAY, 2),
    ]


async def test_a_change_during_a_rollup_keeps_its_day_stale(
    db: Database, sessions: async_sessionmaker[AsyncSession], monkeypatch: Any
) -> None:
    """The refresh reads the marks, then counts; a verdict that lands in between bumps the mark's version,
    so the refresh must leave that mark in place (and billing keeps counting the day from the contacts)."""
    project = await seed_project(sessions)
    _pavel, contact_id = await seed(sessions, project.id)
    await billing.refresh(db, project.id, DAY - dt.timedelta(days=1), DAY)
    assert await count_rows(sessions, BillingStale) == 0
    async with sessions() as session, session.begin():
        await billing.mark_stale(session, project.id, [DAY])  # version 1
    real_fresh_days = billing._fresh_days

    async def marks_read_then_a_review(*args: Any) -> Any:
        seen = await real_fresh_days(*args)
        async with sessions() as other, other.begin():  # a reviewer's verdict commits before the counting
            contact = await other.get(Contact, contact_id)
            assert contact is not None
            contact.final_verdict = Verdict.REJECT
        return seen

    monkeypatch.setattr(billing, "_fresh_days", marks_read_then_a_review)
    await billing.refresh(db, project.id, DAY - dt.timedelta(days=1), DAY)
    monkeypatch.setattr(billing, "_fresh_days", real_fresh_days)
    async with sessions() as session:
        marks = (await session.execute(select(BillingStale.utc_day, BillingStale.version))).all()
    assert [(day, version) for day, version in marks] == [(DAY, 2)]  # bumped by the review: not cleared
    assert await bill(db, sessions, project.id) == [(DAY - dt.timedelta(days=1), 2), (DAY, 2)]


async def test_scheduled_rollup_and_a_time_zone_change(
    db: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    await seed(sessions, project.id)
    now = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(12), dt.UTC)
    assert await housekeeping.roll_up_billing(db, now=now) == billing.RECENT_DAYS + 1
    assert await housekeeping.roll_up_billing(db, now=now) == 0  # nothing changed, nothing rewritten
    # Moved to New York, 10:00 Moscow is 02:00 the same day there; the Moscow roll-ups are not used.
    async with sessions() as session, session.begin():
        await session.execute(
            update(Project).where(Project.id == project.id).values(timezone="America/New_York")
        )
    async with sessions() as session, session.begin():
        await session.execute(update(BillingDay).values(validated=99))
    assert await bill(db, sessions, project.id) == [(DAY - dt.timedelta(days=1), 2), (DAY, 3)]
    assert await housekeeping.roll_up_billing(db, now=now) == billing.RECENT_DAYS + 1
    async with sessions() as session:
        zones = set((await session.scalars(select(BillingRollup.timezone))).all())
    assert zones == {"America/New_York"}
