"""Exactly-once processing of Telegram updates (Telegram redelivers after a crash or a timeout)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from models import ProcessedUpdate
from models.base import utcnow
from services.sql import insert_ignore

WRITES = (
    "writes"  # session.info key: write statements and flushes so far (counted by bot/reply_after_commit.py)
)
BOOKKEEPING = "bookkeeping_writes"  # session.info key: how many of those were the update's claim


def mark_bookkeeping(session: AsyncSession) -> None:
    """What the session wrote so far is the update's claim and inbox removal, not the person's input: an
    error after a commit of only this must not tell the person their input was kept."""
    session.info[BOOKKEEPING] = session.info.get(WRITES, 0)


async def claim_update(session: AsyncSession, bot_id: int, update_id: int) -> bool:
    """Record the update inside the handler's own transaction; False if it was already processed.

    The marker commits together with the handler's effects, so a crash mid-handler leaves neither.
    """
    # ON CONFLICT DO NOTHING, not a failed INSERT and a rollback: the update's transaction (and, on SQLite,
    # its write lock) stays whole, and a duplicate ends with nothing written but its removal from the inbox.
    return await insert_ignore(
        session,
        ProcessedUpdate,
        {"bot_id": bot_id, "update_id": update_id, "processed_at": utcnow()},
        ["bot_id", "update_id"],
    )


async def pause_for_io(session: AsyncSession) -> None:
    """End the update's transaction before slow I/O (a 20 MB download, ffmpeg): no write lock on SQLite and
    no connection idle in transaction on PostgreSQL while it runs. Nothing the update wrote survives: the
    claim and the inbox removal are made again by `resume_after_io`, in the transaction that writes the
    result, so a crash during the I/O leaves the update in the inbox to be handled again."""
    await session.rollback()


async def resume_after_io(session: AsyncSession, bot_id: int, update_id: int) -> bool:
    """Claim the update again (False: a redelivered copy finished meanwhile, so write nothing)."""
    from services import inbox

    claimed = await claim_update(session, bot_id, update_id)
    await inbox.done(session, bot_id, update_id)
    mark_bookkeeping(session)
    return claimed


async def forget_processed_updates(session: AsyncSession, older_than: dt.timedelta) -> int:
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < utcnow() - older_than)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
