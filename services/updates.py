"""Exactly-once processing of Telegram updates (Telegram redelivers after a crash or a timeout)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from infra.sql import insert_ignore
from models import ProcessedUpdate
from models.base import utcnow


async def claim_update(session: AsyncSession, bot_id: int, update_id: int) -> bool:
    """Record the update inside the handler's own transaction; False if it was already processed.
    services.unit_of_work.UpdateUnit.claim is the one caller (it says when the marker commits)."""
    return await insert_ignore(
        session,
        ProcessedUpdate,
        {"bot_id": bot_id, "update_id": update_id, "processed_at": utcnow()},
        ["bot_id", "update_id"],
    )


async def forget_processed_updates(session: AsyncSession, older_than: dt.timedelta) -> int:
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < utcnow() - older_than)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
