"""Every bot-initiated message is written here first (in the caller's transaction), then sent by one
rate-limited sender (jobs/outbox.py): nothing is lost on a crash. Queued exactly once (dedupe keys), sent
at least once: a call whose answer was lost may have gone through and is tried again, so a message can
arrive twice; messages with buttons that must stay single are sent bare and armed (`SendText.arms_buttons`).
What can be queued: infra/messages.py; the dedupe keys: services/outbox_keys.py."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.messages import OutboxMessageBody, dump, method_of
from infra.sql import insert_ignore
from models import OutboxMessage, OutboxStatus
from models.base import utcnow


class MessageAnchor(Protocol):
    """Where a domain row keeps the Telegram id of a message about it (a review card: its assignment), so the
    outbox stays generic: it calls `remember` once the message is sent, `find` before editing it."""

    async def remember(self, session: AsyncSession, key: str, chat_id: int, message_id: int) -> None: ...

    async def find(self, session: AsyncSession, key: str) -> int | None: ...


async def enqueue(
    session: AsyncSession,
    chat_id: int,
    message: OutboxMessageBody,
    *,
    dedupe_key: str | None = None,
    not_before: dt.datetime | None = None,
) -> bool:
    """Queue one message (infra.messages; keys from services.outbox_keys). False if the dedupe key
    exists. Telegram-facing code queues through telegram_ui.notify, which names every message the bot sends."""
    now = utcnow()
    values = {
        "chat_id": chat_id,
        "method": method_of(message),
        "payload": dump(message),
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


async def live_copies(session: AsyncSession, *patterns: str) -> list[tuple[int, str]]:
    """(chat id, dedupe key) of the messages whose key matches a LIKE pattern and that are queued, being sent
    or sent (not failed, not withdrawn): where a later edit of "the same" message must go."""
    rows = await session.execute(
        select(OutboxMessage.chat_id, OutboxMessage.dedupe_key).where(
            or_(*(OutboxMessage.dedupe_key.like(pattern) for pattern in patterns)),
            OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.SENT]),
        )
    )
    return [(int(chat_id), str(key)) for chat_id, key in rows.all()]
