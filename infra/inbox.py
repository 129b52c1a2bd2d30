"""The update inbox: Telegram's updates are kept from the moment they arrive until they are handled.

Polling asks for the next offset (which acknowledges the batch) and the webhook answers 200 only after the
batch is committed here; a handled update is deleted. What remains at start-up was cut off by a crash and
is handled again; the processed-update marker (services/updates.py, written in the handler's own
transaction) makes that a no-op for an update whose handler had committed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.sql import delete_by, insert_many_ignore
from models import InboxUpdate
from models.base import utcnow

MAX_RECOVERIES = 3  # an update that crashed the process this often is given up (and its sender told)


async def store(session: AsyncSession, bot_id: int, updates: list[dict[str, Any]]) -> None:
    now = utcnow()
    rows = [
        {
            "bot_id": bot_id,
            "update_id": int(payload["update_id"]),
            "payload": payload,
            "received_at": now,
            "attempts": 0,
        }
        for payload in updates
    ]
    await insert_many_ignore(session, InboxUpdate, rows, ["bot_id", "update_id"])


async def done(session: AsyncSession, bot_id: int, update_id: int) -> None:
    await session.execute(
        delete_by(InboxUpdate, "bot_id", "update_id"), {"bot_id": bot_id, "update_id": update_id}
    )


async def take_pending(session: AsyncSession, bot_id: int, limit: int = 1000) -> list[InboxUpdate]:
    """Updates left unhandled by an earlier process, oldest first; each take counts as one recovery."""
    rows = list(
        await session.scalars(
            select(InboxUpdate)
            .where(InboxUpdate.bot_id == bot_id)
            .order_by(InboxUpdate.update_id)
            .limit(limit)
        )
    )
    if rows:
        await session.execute(
            update(InboxUpdate)
            .where(InboxUpdate.bot_id == bot_id, InboxUpdate.update_id.in_([r.update_id for r in rows]))
            .values(attempts=InboxUpdate.attempts + 1)
        )
    return rows


async def older_than(
    session: AsyncSession, bot_id: int, cutoff: dt.datetime, limit: int = 500
) -> list[InboxUpdate]:
    return list(
        await session.scalars(
            select(InboxUpdate)
            .where(InboxUpdate.bot_id == bot_id, InboxUpdate.received_at < cutoff)
            .order_by(InboxUpdate.update_id)
            .limit(limit)
        )
    )
