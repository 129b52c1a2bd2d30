"""Daily clean-up of bookkeeping rows that only matter for a short while."""

from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.updates import forget_processed_updates

log = structlog.get_logger(__name__)
# Telegram keeps undelivered updates for 24 hours; a week of ids covers any redelivery.
KEEP_UPDATE_IDS = dt.timedelta(days=7)


async def forget_old_updates(session_factory: async_sessionmaker[AsyncSession]) -> int:
    async with session_factory() as session, session.begin():
        removed = await forget_processed_updates(session, KEEP_UPDATE_IDS)
    log.info("processed_updates_forgotten", removed=removed)
    return removed
