"""Customer surveys and manager alerts over time: a detractor who never wrote the follow-up still reaches
the managers, an alert nobody took within an hour is repeated once, and old survey links expire."""

from __future__ import annotations

import datetime as dt

import structlog
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.alert_cards import enqueue_alert
from models.base import utcnow
from services import alerts, surveys

log = structlog.get_logger(__name__)


async def alert_overdue_detractors(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, now: dt.datetime | None = None
) -> int:
    now = now or utcnow()
    async with session_factory() as session, session.begin():
        raised = await surveys.overdue_follow_ups(session, now)
        for alert in raised:
            await enqueue_alert(session, i18n, alert)
    if raised:
        log.info("detractor_alerts_without_follow_up", count=len(raised))
    return len(raised)


async def repeat_untaken_alerts(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, now: dt.datetime | None = None
) -> int:
    now = now or utcnow()
    async with session_factory() as session, session.begin():
        due = await alerts.due_for_repeat(session, now)
        for alert in due:
            alert.repeated_at = now
            await enqueue_alert(session, i18n, alert, repeat=True)
    if due:
        log.info("alerts_repeated", count=len(due))
    return len(due)


async def expire_surveys(
    session_factory: async_sessionmaker[AsyncSession], now: dt.datetime | None = None
) -> int:
    async with session_factory() as session, session.begin():
        expired = await surveys.expire_surveys(session, now or utcnow())
    if expired:
        log.info("surveys_expired", count=expired)
    return expired
