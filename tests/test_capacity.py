"""Capacity (issue #25 item 6) on a real database: a day's contacts decided automatically, sent to people and
decided by them, what waits now and the reviewer-hours it needs, in the digest (its text and its log row)
and in /report's text; a digest row logged before capacity existed still loads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import JSON, Date, column, insert, select, table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import Database
from infra.messages import SendText, parse_stored
from infra.storage import LocalAudioStore
from jobs import digest as digest_job
from models import (
    Assignment,
    AssignmentStatus,
    ContactStatus,
    DigestLog,
    OutboxMessage,
    Project,
    Verdict,
)
from services import digest as digest_service
from services import outbox_keys
from services.capacity import ESTIMATED, MEASURED, OVERHEAD_MINUTES, Capacity, capacity
from services.digest import local_day
from services.reports import build_report
from services.speech.routing import AUTOMATIC, PERSON
from telegram_ui.cards import rendered
from telegram_ui.digest_cards import digest_text
from telegram_ui.i18n import create_i18n
from telegram_ui.report_cards import report_text
from tests.helpers import add_contact, add_review, add_users, seed_project

MOSCOW = dt.timezone(dt.timedelta(hours=3))
DAY = dt.date(2026, 11, 30)
NOW = dt.datetime(2026, 12, 1, 9, 0, 30, tzinfo=MOSCOW)  # the digest of 30.11 is due
MANAGERS_CHAT = -100777


async def _project(sessions: async_sessionmaker[AsyncSession]) -> Project:
    """A Moscow project whose digest goes to a managers' chat."""
    return await seed_project(sessions, timezone="Europe/Moscow", managers_chat_id=MANAGERS_CHAT)


async def _project_with_mix(sessions: async_sessionmaker[AsyncSession], *, reviews: bool) -> Project:
    """The Moscow project with the mix of contacts of `_seed_mix`."""
    project = await _project(sessions)
    await _seed_mix(sessions, project, reviews=reviews)
    return project


async def _capacity_of_the_day(
    sessions: async_sessionmaker[AsyncSession], project: Project, now: dt.datetime = NOW
) -> Capacity:
    """The capacity of DAY (30.11, in the project's zone) as it stands at `now`: the digest's figures."""
    async with sessions() as session:
        return await capacity(session, project, *local_day(project, DAY), now=now)


async def _seed_mix(sessions: async_sessionmaker[AsyncSession], project: Project, *, reviews: bool) -> None:
    """30.11: 3 decided automatically; 2 routed to a person and reviewed; 1 routed to a person and queued;
    1 never routed (routing off for it) in review; 1 still being analysed. Waiting from 29.11: 1 more.
    Another project's queued contact counts nowhere. With `reviews`, the two reviews took 4 and 10 minutes
    from card to verdict and one more of 6 minutes was written on 28.11: a median of 6."""
    noon = dt.datetime.combine(DAY, dt.time(12), MOSCOW)
    other = await seed_project(sessions, "Elsewhere")
    async with sessions() as session, session.begin():
        promoter, reviewer = await add_users(session, (8001, "Pavel"), (8002, "Rita"))

        async def contact(
            status: ContactStatus,
            routed: str | None,
            verdict: Verdict | None = None,
            *,
            at: dt.datetime = noon,
            seconds: float = 0.0,
            project_id: int = project.id,
        ) -> int:
            row, audio = await add_contact(session, project_id, promoter.id)
            row.submitted_at, row.status, row.routed_to, row.final_verdict = at, status, routed, verdict
            row.queued_at = at if status != ContactStatus.RECEIVED else None
            audio.duration_seconds = seconds
            return row.id

        async def review(contact_id: int, assigned: dt.datetime, minutes: float) -> None:
            written = assigned + dt.timedelta(minutes=minutes)
            await add_review(session, contact_id, reviewer.id, Verdict.APPROVE, written, assigned_at=assigned)

        for verdict in (Verdict.APPROVE, Verdict.APPROVE, Verdict.REJECT):
            await contact(ContactStatus.REVIEWED, AUTOMATIC, verdict)
        first = await contact(ContactStatus.REVIEWED, PERSON, Verdict.APPROVE)
        second = await contact(ContactStatus.REVIEWED, PERSON, Verdict.APPROVE)
        await contact(ContactStatus.QUEUED, PERSON, seconds=120.0)
        await contact(ContactStatus.IN_REVIEW, None, seconds=240.0)
        await contact(ContactStatus.RECEIVED, None)
        await contact(ContactStatus.QUEUED, PERSON, at=noon - dt.timedelta(days=1), seconds=180.0)
        await contact(ContactStatus.QUEUED, None, project_id=other.id, seconds=999.0)
        if reviews:
            await review(first, noon + dt.timedelta(minutes=5), 4)
            await review(second, noon + dt.timedelta(minutes=5), 10)
            earlier = await contact(
                ContactStatus.REVIEWED, PERSON, Verdict.APPROVE, at=noon - dt.timedelta(days=2)
            )
            await review(earlier, noon - dt.timedelta(days=2), 6)


async def test_counts_and_reviewer_hours_from_the_reviews_of_the_last_week(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    project = await _project_with_mix(sessions, reviews=True)
    found = await _capacity_of_the_day(sessions, project)
    assert (found.automatic, found.to_people, found.decided_by_people, found.waiting) == (3, 4, 2, 3)
    assert (found.minutes_source, found.reviews_measured) == (MEASURED, 3)
    assert found.minutes_per_contact == pytest.approx(6.0, abs=0.01)
    assert found.queue_hours == pytest.approx(3 * 6.0 / 60, abs=0.001)  # 0.3 reviewer-hours
    # Eight days on, those reviews are older than the week: the estimate takes over.
    later = await _capacity_of_the_day(sessions, project, NOW + dt.timedelta(days=8))
    assert later.minutes_source == ESTIMATED and later.reviews_measured == 0


async def test_a_review_dated_before_its_card_is_not_a_duration(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # found by a digest test whose fixture dated reviews before their cards: "-8343.7 min a contact"
    project = await _project_with_mix(sessions, reviews=True)
    async with sessions() as session, session.begin():
        skewed = await session.scalar(
            select(Assignment).where(Assignment.status == AssignmentStatus.DONE).order_by(Assignment.id)
        )
        assert skewed is not None
        skewed.assigned_at += dt.timedelta(hours=3)  # now after its review
    found = await _capacity_of_the_day(sessions, project)
    assert (found.minutes_source, found.reviews_measured) == (MEASURED, 2)
    assert found.minutes_per_contact >= 0
    assert found.minutes_per_contact == pytest.approx((10.0 + 6.0) / 2, abs=0.01)


async def test_without_reviews_the_recordings_and_the_overhead_are_the_estimate(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    project = await _project_with_mix(sessions, reviews=False)
    found = await _capacity_of_the_day(sessions, project)
    # The waiting recordings last 120, 240 and 180 s: 3 minutes on average, plus the overhead.
    assert (found.waiting, found.minutes_source) == (3, ESTIMATED)
    assert found.minutes_per_contact == pytest.approx(3.0 + OVERHEAD_MINUTES)
    assert found.queue_hours == pytest.approx(3 * (3.0 + OVERHEAD_MINUTES) / 60)


async def test_the_digest_shows_and_logs_the_capacity_block(
    db: Database, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    project = await _project_with_mix(sessions, reviews=True)
    i18n = create_i18n("en")
    assert await digest_job.send_digests(db, i18n, LocalAudioStore(tmp_path / "charts"), NOW) == 1
    async with sessions() as session:
        queued = await session.scalar(
            select(OutboxMessage).where(
                OutboxMessage.dedupe_key == outbox_keys.digest(project.id, DAY, MANAGERS_CHAT)
            )
        )
        assert queued is not None
        message = parse_stored(queued.method, queued.payload)
        assert isinstance(message, SendText)
        logged = await session.scalar(select(DigestLog).where(DigestLog.project_id == project.id))
    assert "Capacity: decided automatically 3 · sent to people 4, decided by them 2" in message.text
    assert (
        "Waiting now: 3 · the queue needs ≈0.3 reviewer-hours (6.0 min a contact, median of 3 reviews over"
        " 7 days)"
    ) in message.text
    assert logged is not None and logged.figures.capacity is not None
    kept = logged.figures.capacity
    assert (kept.automatic, kept.to_people, kept.decided_by_people, kept.waiting) == (3, 4, 2, 3)
    assert kept.minutes_source == MEASURED and kept.queue_hours == pytest.approx(0.3, abs=0.001)
    # The same block in Russian.
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None
        report = await digest_service.build_digest(session, stored, DAY, now=NOW)
    russian = rendered(i18n, "ru", digest_text, report)
    assert "Нагрузка: решено автоматически 3 · передано людям 4, ими решено 2" in russian
    assert "Ждут сейчас: 3 · очереди нужно ≈0.3 ч работы оценщиков" in russian


async def test_the_report_shows_the_capacity_of_its_period(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    project = await _project_with_mix(sessions, reviews=False)
    async with sessions() as session:
        # Two days: the contact of 29.11 waiting for a person joins the period's figures.
        report = await build_report(session, project, DAY - dt.timedelta(days=1), DAY, now=NOW)
    text = rendered(create_i18n("en"), "en", report_text, report)
    assert "Capacity: decided automatically 3 · sent to people 5, decided by them 2" in text
    assert (
        "Waiting now: 3 · the queue needs ≈0.2 reviewer-hours (5.0 min a contact, estimate: the recording's"
        " length + 2 min)"
    ) in text


async def test_a_digest_row_logged_before_capacity_still_loads(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The JSON an older version wrote (no "capacity" key) loads, and the next digest reads its day back."""
    project = await _project(sessions)
    digest_log = table(
        "digest_log",
        column("project_id"),
        column("digest_date", Date()),
        column("figures", JSON()),
        column("recipients", JSON()),
        column("created_at"),
        column("updated_at"),
    )
    older = {
        "day": DAY.isoformat(),
        "late": False,
        "today": {"received": 4, "reviewed": 2, "approved": 2, "rejected": 0, "fraud": 0, "flags": {}},
        "promoters": {},
        "baseline": {"received": 1},
        "nps": None,
        "nps_responses": 0,
        "open_alerts": 0,
        "disputes_opened": 0,
        "disputes_resolved": 0,
        "reviewers": [],
    }
    async with sessions() as session, session.begin():
        await session.execute(
            insert(digest_log).values(
                project_id=project.id,
                digest_date=DAY,
                figures=older,
                recipients=[MANAGERS_CHAT],
                created_at=NOW,
                updated_at=NOW,
            )
        )
    async with sessions() as session:
        logged = await session.scalar(select(DigestLog).where(DigestLog.project_id == project.id))
        assert logged is not None
        assert logged.figures.capacity is None and logged.figures.today is not None
        assert logged.figures.today.received == 4
        nextday = await digest_service.build_digest(session, project, DAY + dt.timedelta(days=1), now=NOW)
    assert dict(nextday.trend)[DAY].received == 4  # read back from the older row, not computed again
    assert nextday.capacity is not None
