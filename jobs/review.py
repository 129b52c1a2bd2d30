"""Review jobs: dispatch rounds, SLA expiry, and the daily re-review. Each takes `now` for testing."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from zoneinfo import ZoneInfo

import structlog
from aiogram.utils.i18n import I18n
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Assignment, Project
from models.base import utcnow
from models.payloads import Exhausted, SlaStreak
from services import automatic, review
from services.alerts import AlertRequest
from telegram_ui import cards, review_notices
from telegram_ui.alert_cards import raise_and_send

log = structlog.get_logger(__name__)


async def _projects(session: AsyncSession) -> list[Project]:
    return list(
        await session.scalars(select(Project).where(Project.is_active.is_(True)).order_by(Project.id))
    )


@contextlib.asynccontextmanager
async def _project_transaction(
    session_factory: async_sessionmaker[AsyncSession], project_id: int
) -> AsyncIterator[tuple[AsyncSession, Project]]:
    """One transaction per project, so one project's trouble never holds back another's work."""
    async with session_factory() as session, session.begin():
        project = await session.get(Project, project_id)
        assert project is not None
        yield session, project


async def _project_ids(session_factory: async_sessionmaker[AsyncSession]) -> list[int]:
    async with session_factory() as session:
        return [p.id for p in await _projects(session)]


async def dispatch(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, now: dt.datetime | None = None
) -> int:
    """Decide what speech routing leaves to the machine, then give queued work to reviewers on shift (or
    offer it in the reviewers' group); returns cards created."""
    now = now or utcnow()
    created = 0
    for project_id in await _project_ids(session_factory):
        async with _project_transaction(session_factory, project_id) as (session, project):
            # Speech routing first (off unless the project turned it on): clear contacts are decided here
            # and never reach a reviewer; the rest stay queued for the people below.
            for decision in await automatic.route_queued(session, project, now=now):
                await review_notices.queue_after_automatic(session, i18n, project, decision)
            if project.reviewers_chat_id:
                offers = await review.offer_to_group(session, project, now=now)
                for offer in offers:
                    await cards.enqueue_offer(session, i18n, offer, project.reviewers_chat_id)
                created += len(offers)
            await _alert_exhausted(session, i18n, project)
            created += await _send_cards(session, i18n, await review.assign_queued(session, project, now=now))
    if created:
        log.info("dispatched", cards=created)
    return created


async def _send_cards(session: AsyncSession, i18n: I18n, assignments: Sequence[Assignment]) -> int:
    """Queue the card of each new assignment (first review or re-review) to its reviewer; how many."""
    for assignment in assignments:
        await cards.enqueue_card(session, i18n, assignment)
    return len(assignments)


async def _alert_exhausted(session: AsyncSession, i18n: I18n, project: Project) -> None:
    """A contact every reviewer has had without rating goes round again, and managers hear of it once."""
    stuck = await review.exhausted(session, project, await review.queued_contacts(session, project))
    for contact in stuck:
        tries = len(await review.previous_reviewers(session, contact.id))
        await raise_and_send(
            session,
            i18n,
            AlertRequest(
                project.id, Exhausted(tries=tries), contact.id, dedupe_key=f"exhausted:{contact.id}:{tries}"
            ),
        )


async def expire(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, now: dt.datetime | None = None
) -> int:
    """Cards past their deadline: edited to say so, the contact goes back to the queue, managers alerted
    after the project's number of expiries in a row."""
    now = now or utcnow()
    async with session_factory() as session, session.begin():
        expiries = await review.expire_overdue(session, now=now)
        for expiry in expiries:
            assignment, contact = expiry.assignment, expiry.contact
            await cards.enqueue_card_closed(session, i18n, assignment, cards.CardClosed.EXPIRED)
            project = await session.get(Project, contact.project_id)
            assert project is not None
            if expiry.expiries_in_a_row >= project.sla_expiries_before_alert:
                await raise_and_send(
                    session,
                    i18n,
                    AlertRequest(
                        project.id,
                        SlaStreak(count=expiry.expiries_in_a_row),
                        contact.id,
                        dedupe_key=f"sla:{contact.id}:{expiry.expiries_in_a_row}",
                    ),
                )
    if expiries:
        log.info("cards_expired", count=len(expiries))
    return len(expiries)


async def rereview(
    session_factory: async_sessionmaker[AsyncSession],
    i18n: I18n,
    now: dt.datetime | None = None,
    *,
    force: bool = False,
) -> int:
    """Once a day per project, at its re-review time in its timezone."""
    now = now or utcnow()
    created = 0
    for project_id in await _project_ids(session_factory):
        async with _project_transaction(session_factory, project_id) as (session, project):
            local = now.astimezone(ZoneInfo(project.timezone))
            due = local.time() >= project.rereview_time and project.last_rereview_on != local.date()
            if not (due or force):
                continue
            project.last_rereview_on = local.date()
            created += await _send_cards(
                session, i18n, await review.schedule_rereviews(session, project, now=now)
            )
    if created:
        log.info("rereviews_assigned", cards=created)
    return created
