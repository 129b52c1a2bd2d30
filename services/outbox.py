"""Every bot-initiated message is written here first (in the caller's transaction), then sent by one
rate-limited sender (jobs/outbox.py): nothing is lost on a crash, nothing is sent twice on a retry."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from models import OutboxMessage, OutboxStatus
from models.base import utcnow
from services.sql import insert_ignore


async def enqueue(
    session: AsyncSession,
    chat_id: int,
    method: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    not_before: dt.datetime | None = None,
) -> bool:
    """Queue a Bot API call (sendMessage, sendVoice, editMessageText, ...). False if the dedupe key exists."""
    now = utcnow()
    values = {
        "chat_id": chat_id,
        "method": method,
        "payload": payload,
        "dedupe_key": dedupe_key,
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "not_before": not_before or now,
        "created_at": now,
        "updated_at": now,
    }
    if dedupe_key is None:
        session.add(OutboxMessage(**values))
        await session.flush()
        return True
    return await insert_ignore(session, OutboxMessage, values, ["dedupe_key"])


async def cancel(session: AsyncSession, dedupe_key: str) -> bool:
    """Withdraw a message that has not been sent yet (e.g. feedback after a review's undo)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.dedupe_key == dedupe_key, OutboxMessage.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.CANCELLED, updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
