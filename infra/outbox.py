"""Every bot-initiated message is written here first (in the caller's transaction), then sent by one
rate-limited sender (jobs/outbox.py): nothing is lost on a crash. Queued exactly once (dedupe keys), sent
at least once: a call whose answer was lost may have gone through and is tried again, so a message can
arrive twice; messages with buttons that must stay single are sent bare and armed (`SendText.arms_buttons`).
What can be queued: infra/messages.py; the dedupe keys: services/outbox_keys.py. A chart travels as a key
in the blob store (infra/storage.py), removed once no message still to be sent carries it
(`charts_in_use`, `charts_done_before`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any, Protocol

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


# A message still to be sent, whose chart must stay in the store; what is done with it: sent or given up.
UNSENT = (OutboxStatus.PENDING, OutboxStatus.SENDING)
DONE = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.CANCELLED)


def _chart_key() -> Any:
    """The blob-store key a queued chart carries (infra.messages.SendChart.blob_key), NULL for any other
    message: JSON_EXTRACT on SQLite, ->> on PostgreSQL."""
    return OutboxMessage.payload["blob_key"].as_string()


async def charts_in_use(
    session: AsyncSession, keys: Collection[str], statuses: Collection[OutboxStatus] = UNSENT
) -> set[str]:
    """Those of `keys` that a message still to be sent (pending, or being sent) carries: never deleted.
    With every status in `statuses`: those that any queued message carries."""
    if not keys:
        return set()
    key = _chart_key()
    found = await session.scalars(
        select(key).distinct().where(OutboxMessage.status.in_(list(statuses)), key.in_(sorted(keys)))
    )
    return {str(k) for k in found}


async def charts_done_before(session: AsyncSession, before: dt.datetime) -> list[str]:
    """Keys of the charts queued before `before` whose messages are all done (sent, failed or withdrawn):
    none still to be sent carries them (both read in one statement, one snapshot)."""
    key = _chart_key()
    unsent = select(key).where(OutboxMessage.status.in_(UNSENT), key.is_not(None))
    rows = await session.scalars(
        select(key)
        .distinct()
        .where(
            OutboxMessage.status.in_(DONE),
            OutboxMessage.created_at < before,
            key.is_not(None),
            key.not_in(unsent),
        )
        .order_by(key)
    )
    return [str(k) for k in rows]
