"""The dashboard's roll-up (services/console_rollup.py): the console dashboard reads closed days from it and
the open day from the contacts, and shows exactly the figures it shows when it reads everything live; a
change to a rolled-up day (a verdict, a customer's answer) shows at once, before any refresh."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import Database
from jobs import housekeeping
from models import (
    Assignment,
    AssignmentStatus,
    Contact,
    DashboardDay,
    DashboardPromoterDay,
    DashboardRollup,
    DashboardStale,
    DashboardStoreDay,
    NpsCategory,
    NpsScale,
    NpsSurvey,
    Project,
    User,
    Verdict,
)
from models.base import utcnow
from services import console, console_rollup, surveys
from tests.helpers import add_contact, add_nps_answer, count_rows, seed_project

MOSCOW, YEKATERINBURG = "Europe/Moscow", "Asia/Yekaterinburg"
STORES = ("Magnit 3", "Pyaterochka 12", None)  # None: a form without a store answer


async def seed(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> tuple[list[int], list[int]]:
    """Two projects in Moscow's zone and one in Yekaterinburg's, three promoters each, contacts over the last
    70 days at every hour (today's too), with verdicts, automatic decisions, customers' answers that came
    days later, and expired cards. Returns the project ids and the contact ids."""
    rng = random.Random(26)
    projects = [await seed_project(sessions, name) for name in ("Tasting", "Street", "Bank")]
    async with sessions() as session, session.begin():
        for project, zone in zip(projects, (MOSCOW, MOSCOW, YEKATERINBURG), strict=True):
            await session.execute(update(Project).where(Project.id == project.id).values(timezone=zone))
        people = [User(telegram_id=9000 + n, first_name=f"Promoter {n}") for n in range(9)]
        session.add_all(people)
        await session.flush()
        contact_ids = []
        for n in range(400):
            project = projects[n % 3]
            promoter = people[(n % 3) * 3 + rng.randrange(3)]
            contact, _audio = await add_contact(session, project.id, promoter.id)
            contact.submitted_at = now - dt.timedelta(
                hours=rng.randrange(0, 70 * 24), minutes=rng.randrange(60)
            )
            store = rng.choice(STORES)
            contact.form_answers = {"store": store} if store else {}
            verdict = rng.choice([None, Verdict.APPROVE, Verdict.APPROVE, Verdict.REJECT, Verdict.FRAUD])
            contact.final_verdict = verdict
            contact.routed_to = rng.choice([None, "person", "automatic"])
            contact_ids.append(contact.id)
            if rng.random() < 0.3:
                answered = min(now, contact.submitted_at + dt.timedelta(hours=rng.randrange(1, 60)))
                score = rng.randrange(11)
                category = surveys.category_of(NpsScale.ZERO_TO_TEN, score)
                await add_nps_answer(session, contact.id, score, category, answered_at=answered)
            if rng.random() < 0.2:
                closed = min(now, contact.submitted_at + dt.timedelta(minutes=rng.randrange(20, 3000)))
                session.add(
                    Assignment(contact_id=contact.id, status=AssignmentStatus.EXPIRED, closed_at=closed)
                )
    return [p.id for p in projects], contact_ids


async def boards(
    sessions: async_sessionmaker[AsyncSession], viewers: list[console.Viewer], today: dt.date, *, rollup: bool
) -> list[console.Dashboard]:
    found = []
    async with sessions() as session:
        for viewer in viewers:
            for days in (14, 30, 92):
                found.append(await console.dashboard(session, viewer, today, days=days, rollup=rollup))
                for project_id in sorted(viewer.project_ids):
                    found.append(
                        await console.dashboard(
                            session, viewer, today, days=days, project_id=project_id, rollup=rollup
                        )
                    )
    return found


async def test_the_dashboard_from_the_rollup_equals_the_dashboard_from_the_contacts(
    db: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow()
    project_ids, contact_ids = await seed(sessions, now)
    today = now.astimezone(ZoneInfo(MOSCOW)).date()
    manager = console.Viewer(1, 1, "Manager", None, False, frozenset(project_ids[:2]))
    admin = console.Viewer(2, 2, "Admin", None, True, frozenset(project_ids))
    viewers = [manager, admin]
    live = await boards(sessions, viewers, today, rollup=False)
    assert sum(board.this_week.volume for board in live) > 0
    assert await boards(sessions, viewers, today, rollup=True) == live  # nothing rolled up yet

    # The scheduled job rolls up the last closed days of every project, each in its own zone.
    assert await housekeeping.roll_up_dashboard(db, now=now) == 3 * console_rollup.RECENT_DAYS
    assert await housekeeping.roll_up_dashboard(db, now=now) == 0  # idempotent: nothing to do
    assert await count_rows(sessions, DashboardRollup) == 3 * console_rollup.RECENT_DAYS
    for table in (DashboardDay, DashboardPromoterDay, DashboardStoreDay):
        assert await count_rows(sessions, table) > 0
    async with sessions() as session:
        rolled, _seen = await console_rollup.fresh_days(
            await session.connection(), project_ids, today - dt.timedelta(days=91), today, MOSCOW
        )
    async with sessions() as session:
        moscow = await session.get(Project, project_ids[0])
        assert moscow is not None
        _first, last_closed = console_rollup.closed_range(moscow, now)
    assert today not in rolled[project_ids[0]]  # the open day is read live
    assert last_closed in rolled[project_ids[0]] and last_closed >= today - dt.timedelta(days=2)
    assert project_ids[2] not in rolled  # counted in Yekaterinburg's days: Moscow's dashboard reads it live
    assert await boards(sessions, viewers, today, rollup=True) == live

    # A verdict changed on a rolled-up day, and a customer's answer to an older contact, show at once.
    async with sessions() as session, session.begin():
        old = [
            c
            for c in await session.scalars(select(Contact).where(Contact.id.in_(contact_ids)))
            if (today - c.submitted_at.astimezone(ZoneInfo(MOSCOW)).date()).days in range(3, 20)
        ]
        old[0].final_verdict = Verdict.FRAUD if old[0].final_verdict != Verdict.FRAUD else Verdict.APPROVE
        old[1].routed_to, old[1].final_verdict = "automatic", Verdict.APPROVE
        unrated = [
            c
            for c in old[2:]
            if not await session.scalar(select(NpsSurvey.id).where(NpsSurvey.contact_id == c.id))
        ]
        await add_nps_answer(session, unrated[0].id, 0, NpsCategory.DETRACTOR)  # a late answer
    assert await count_rows(sessions, DashboardStale) > 0
    changed = await boards(sessions, viewers, today, rollup=False)
    assert changed != live
    assert await boards(sessions, viewers, today, rollup=True) == changed
    assert await housekeeping.roll_up_dashboard(db, now=now) > 0  # the stale days again
    assert await count_rows(sessions, DashboardStale) == 0
    # A contact reported now, and its verdict, land on the open day: intake and review mark nothing.
    async with sessions() as session, session.begin():
        fresh, _audio = await add_contact(session, project_ids[0], old[0].promoter_id)
        fresh.final_verdict = Verdict.APPROVE
    assert await count_rows(sessions, DashboardStale) == 0
    changed = await boards(sessions, viewers, today, rollup=False)
    assert await boards(sessions, viewers, today, rollup=True) == changed

    # What a fresh day shows is the roll-up's: a changed roll-up row shows through.
    async with sessions() as session, session.begin():
        await session.execute(
            update(DashboardDay)
            .where(
                DashboardDay.day == today - dt.timedelta(days=1), DashboardDay.project_id == project_ids[0]
            )
            .values(volume=DashboardDay.volume + 1000)
        )
    async with sessions() as session:
        board = await console.dashboard(session, manager, today, project_id=project_ids[0])
    assert next(d for d in board.days if d.day == last_closed).volume >= 1000
