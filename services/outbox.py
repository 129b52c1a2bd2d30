"""Every bot-initiated message is written here first (in the caller's transaction), then sent by one
rate-limited sender (jobs/outbox.py): nothing is lost on a crash. Queued exactly once (dedupe keys), sent
at least once: a call whose answer was lost may have gone through and is tried again, so a message can
arrive twice; messages with buttons that must stay single are sent bare and armed (`buttons_after_send`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from models import OutboxMessage, OutboxStatus
from models.base import utcnow
from services.sql import insert_ignore

ANCHOR = (
    "anchor"  # payload key: "kind:key" of the row that keeps the message's Telegram id (see MessageAnchor)
)
LEGACY_CARD = "card_of_assignment"  # the same for review cards, in rows queued before anchors existed
ARM = "buttons_after_send"  # payload key: send without the buttons, then put them on the copy that came back


class MessageAnchor(Protocol):
    """Where a domain row keeps the Telegram id of a message about it (a review card: its assignment), so the
    outbox stays generic: it calls `remember` once the message is sent, `find` before editing it."""

    async def remember(self, session: AsyncSession, key: str, chat_id: int, message_id: int) -> None: ...

    async def find(self, session: AsyncSession, key: str) -> int | None: ...


def anchor_of(payload: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, key) of a queued message's anchor, if it has one."""
    if payload.get(ANCHOR):
        kind, _, key = str(payload[ANCHOR]).partition(":")
        return kind, key
    if payload.get(LEGACY_CARD):
        return "card", str(payload[LEGACY_CARD])
    return None


def buttons_after_send(method: str, payload: dict[str, Any]) -> bool:
    """Whether the sender sends this message bare and then edits its buttons onto the copy whose id it got
    back: anchored messages (their id is what later edits find) unless told otherwise, and any message
    queued with `buttons_after_send=True`. A copy whose answer was lost then never carries live buttons."""
    if method != "sendMessage" or not payload.get("reply_markup"):
        return False
    if ARM in payload:
        return bool(payload[ARM])
    return anchor_of(payload) is not None


async def enqueue(
    session: AsyncSession,
    chat_id: int,
    method: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    not_before: dt.datetime | None = None,
    anchor: str | None = None,
    buttons_after_send: bool | None = None,
) -> bool:
    """Queue a Bot API call (sendMessage, sendVoice, editMessageText, ...). False if the dedupe key exists.
    `anchor` ("kind:key"): the message's id is remembered there once sent, and found there for an edit.
    `buttons_after_send`: see the function of that name (default: anchored messages do)."""
    now = utcnow()
    payload = {**payload, ANCHOR: anchor} if anchor else payload
    if buttons_after_send is not None:
        payload = {**payload, ARM: buttons_after_send}
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
