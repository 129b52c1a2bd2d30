"""Customer surveys and manager alerts over time: a detractor who never wrote the follow-up still reaches
the managers, an alert nobody took within an hour is repeated once, old survey links expire, and client
contacts get their periodic survey (with one reminder)."""

from __future__ import annotations

import datetime as dt

import structlog
from aiogram.utils.i18n import I18n
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Project
from models.base import utcnow
from services import alerts, client_surveys, surveys
from telegram_ui import notify
from telegram_ui.alert_cards import enqueue_alert, raise_and_send
from telegram_ui.cards import rendered
from telegram_ui.client_surveys import client_survey_message

log = structlog.get_logger(__name__)


def _logged(event: str, count: int) -> int:
    """A job's count, logged when it did anything (an idle run every minute would only be noise)."""
    if count:
        log.info(event, count=count)
    return count


async def alert_overdue_detractors(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, now: dt.datetime | None = None
) -> int:
    """Detractors past services.surveys.FOLLOW_UP_WAIT without a follow-up: their managers hear anyway."""
    now = now or utcnow()
    async with session_factory() as session, session.begin():
        raised = 0
        for request in await surveys.overdue_follow_ups(session, now):
            raised += await raise_and_send(session, i18n, request) is not None
    return _logged("detractor_alerts_without_follow_up", raised)


async def repeat_untaken_alerts(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, now: dt.datetime | None = None
) -> int:
    """Alerts nobody took within services.alerts.REPEAT_AFTER are sent once more, each only once."""
    now = now or utcnow()
    async with session_factory() as session, session.begin():
        due = await alerts.due_for_repeat(session, now)
        for alert in due:
            alert.repeated_at = now
            await enqueue_alert(session, i18n, alert, repeat=True)
    return _logged("alerts_repeated", len(due))


async def expire_surveys(
    session_factory: async_sessionmaker[AsyncSession], now: dt.datetime | None = None
) -> int:
    async with session_factory() as session, session.begin():
        expired = await surveys.expire_surveys(session, now or utcnow())
    return _logged("surveys_expired", expired)


async def send_client_surveys(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, now: dt.datetime | None = None
) -> int:
    """Due client survey rounds and reminders, per project at its local survey time; returns messages queued."""
    now = now or utcnow()
    async with session_factory() as session:
        project_ids = list(
            await session.scalars(
                select(Project.id).where(Project.is_active.is_(True), Project.client_survey_months > 0)
            )
        )
    queued = 0
    for project_id in project_ids:
        async with session_factory() as session, session.begin():
            project = await session.get(Project, project_id)
            assert project is not None
            for due in await client_surveys.due_rounds(session, project, now):
                locale = due.user.locale or i18n.default_locale
                text, keyboard = rendered(
                    i18n, locale, client_survey_message, due.survey, project, locale, due.reminder
                )
                await notify.queue_client_survey(
                    session, due.user.telegram_id, due.survey.id, text, keyboard, reminder=due.reminder
                )
                queued += 1
    return _logged("client_surveys_queued", queued)
