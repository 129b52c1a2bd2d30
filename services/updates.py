"""Exactly-once processing of Telegram updates (Telegram redelivers after a crash or a timeout)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import ProcessedUpdate
from models.base import utcnow


async def claim_update(session: AsyncSession, bot_id: int, update_id: int) -> bool:
    """Record the update inside the handler's own transaction; False if it was already processed.

    The marker commits together with the handler's effects, so a crash mid-handler leaves neither.
    """
    session.add(ProcessedUpdate(bot_id=bot_id, update_id=update_id))
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def forget_processed_updates(session: AsyncSession, older_than: dt.timedelta) -> int:
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < utcnow() - older_than)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
