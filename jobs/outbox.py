"""The outbox sender: the only place bot-initiated messages leave, within Telegram's limits.

Limits honoured: about 30 messages a second overall, 1 a second per chat, 20 a minute per group.
A 429 pauses the chat it was answered for (flood waits are per chat), for its retry_after; 5xx and
network errors back off per message.

Delivery is at-least-once by design. Each message is marked `sending` (committed) before the call and
`sent` after it; a call whose answer never comes (a timeout, a dropped connection, the process killed)
may still have run on Telegram (telegram-bot-api starts a query as soon as it has read it), and it is
tried again: the same message can arrive twice. Where a second copy would do harm, it is made harmless:
a message with an anchor (a review card) or `buttons_after_send` goes out without its buttons, and the
buttons are put on by editMessageReplyMarkup to the copy whose id came back; an earlier copy whose answer
was lost keeps no live button. See docs/architecture.md, "Delivery guarantees".
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

import structlog
from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, Message
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import send_budget
from infra.db import Database
from infra.messages import (
    EditText,
    OutboxMessageBody,
    SendChart,
    SendSurveyCode,
    SendText,
    SendVoice,
    anchor_of,
    parse_stored,
)
from infra.outbox import MessageAnchor, charts_in_use
from infra.storage import AudioStore
from models import OutboxMessage, OutboxStatus, Project
from models.base import utcnow
from services import review
from services.surveys import qr_png
from telegram_ui.recordings import send_recording

log = structlog.get_logger(__name__)
MAX_BACKOFF = 300.0  # seconds between tries of one message, at most
STUCK_AFTER = 8  # tries after which a message still failing is logged as stuck (and still retried)
TRANSIENT = (
    TelegramServerError,
    TelegramNetworkError,
    ClientDecodeError,
    TelegramUnauthorizedError,
    TelegramConflictError,
)
STALE_SENDING = dt.timedelta(seconds=60)  # the default of OUTBOX_STALE_SECONDS


class RateLimiter:
    """Sliding windows per Telegram's published bot limits."""

    def __init__(
        self,
        per_second: int = 30,
        chat_interval: float = 1.0,
        group_per_minute: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second, self.chat_interval, self.group_per_minute = (
            per_second,
            chat_interval,
            group_per_minute,
        )
        self.clock = clock
        self._global: deque[float] = deque()
        self._chat_last: dict[int, float] = {}
        self._group: dict[int, deque[float]] = {}
        self._chat_paused: dict[int, float] = {}  # chat -> end of its flood wait (a 429 for that chat)

    def wait(self, chat_id: int) -> float:
        """Seconds until a message to this chat may go."""
        now = self.clock()
        while self._global and now - self._global[0] >= 1.0:
            self._global.popleft()
        waits = [self._chat_paused.get(chat_id, now) - now]
        if len(self._global) >= self.per_second:
            waits.append(1.0 - (now - self._global[0]))
        if chat_id in self._chat_last:
            waits.append(self.chat_interval - (now - self._chat_last[chat_id]))
        if chat_id < 0:
            window = self._group.setdefault(chat_id, deque())
            while window and now - window[0] >= 60.0:
                window.popleft()
            if len(window) >= self.group_per_minute:
                waits.append(60.0 - (now - window[0]))
        return max(0.0, *waits)

    def record(self, chat_id: int) -> None:
        now = self.clock()
        self._global.append(now)
        self._chat_last[chat_id] = now
        if chat_id < 0:
            self._group.setdefault(chat_id, deque()).append(now)

    def sent_now(self, chat_id: int) -> None:
        """A call to this chat has just been answered (its slot was counted when it was claimed): the
        chat's next message is spaced from this moment."""
        now = self.clock()
        self._chat_last[chat_id] = max(self._chat_last.get(chat_id, now), now)

    def pause(self, chat_id: int, seconds: float) -> None:
        """A 429 for this chat: it waits `seconds`; other chats go on. Telegram's limits that a bot runs
        into are per chat (1 message a second, 20 a minute in a group), and the real server answers the
        flood wait to the call that went over (telegram-bot-api Client.cpp fail_query_with_error ->
        Query::set_retry_after_error); the overall 30 a second is kept by this limiter itself."""
        until = self.clock() + seconds
        self._chat_paused[chat_id] = max(self._chat_paused.get(chat_id, until), until)


@dataclass(frozen=True)
class _Claimed:
    id: int
    chat_id: int
    method: str
    payload: dict[str, Any]
    attempts: int
    telegram_message_id: int | None = None  # set once sent, while its buttons are still to be put on


@dataclass
class _Outcome:
    message: _Claimed
    status: OutboxStatus
    attempts: int
    body: OutboxMessageBody | None = None  # the stored message, once it parsed
    result_id: int | None = None
    error: str | None = None
    delay: float = 0.0
    new_chat: int | None = None


def default_anchors() -> dict[str, MessageAnchor]:
    """The anchors every deployment has (the runtime passes them; a sender built without them gets these)."""
    return {review.CARD: review.CardAnchor()}


class OutboxSender:
    def __init__(
        self,
        bot: Bot,
        db: Database,
        *,
        limiter: RateLimiter | None = None,
        batch: int = 200,
        audio_store: AudioStore | None = None,
        stale_after: dt.timedelta = STALE_SENDING,
        anchors: Mapping[str, MessageAnchor] | None = None,
    ) -> None:
        self.bot, self.db, self.session_factory = bot, db, db.sessions
        self.stale_after = stale_after
        self.anchors = dict(anchors) if anchors is not None else default_anchors()
        self._next_recovery = 0.0
        self.audio_store = audio_store
        self.limiter = limiter or RateLimiter()
        self.batch = batch
        self.sent = 0

    async def recover(self) -> int:
        """Messages a crash left half-sent go out again (see the module note). Run at start and then every
        half `stale_after`: a process restarted within `stale_after` of the crash finds its rows still
        fresh at start, and they were stuck in `sending` for good before this ran again."""
        self._next_recovery = time.monotonic() + self.stale_after.total_seconds() / 2
        async with self.session_factory() as session, session.begin():
            result = await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.status == OutboxStatus.SENDING,
                    OutboxMessage.updated_at < utcnow() - self.stale_after,
                )
                .values(status=OutboxStatus.PENDING)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def _heads(self) -> list[tuple[int, int, dt.datetime]]:
        """(message id, chat id, not before) of each chat's oldest pending message.

        A chat whose oldest message waits (after a 429 or a 5xx) sends nothing newer: order per chat holds.
        Read outside any write transaction: on SQLite it queues behind no update.
        """
        async with self._reading() as session:
            rows = await session.execute(
                select(OutboxMessage.id, OutboxMessage.chat_id, OutboxMessage.not_before)
                .where(OutboxMessage.status == OutboxStatus.PENDING)
                .order_by(OutboxMessage.id)
                .limit(self.batch)
            )
            heads: dict[int, tuple[int, dt.datetime]] = {}
            for message_id, chat_id, not_before in rows.all():
                heads.setdefault(int(chat_id), (int(message_id), not_before))
        return [(m, c, not_before) for c, (m, not_before) in heads.items()]

    def _reading(self) -> AbstractAsyncContextManager[AsyncSession]:
        """Reads outside any write transaction (SQLite: no write lock)."""
        return self.db.read_session()

    def _ready(self, due: list[tuple[int, int]]) -> list[int]:
        """The due heads that the limits let go now, oldest first; each one's send is counted at once."""
        ready: list[int] = []
        room = send_budget.outbox_room(self.bot, len(due))  # the bot's one budget, its answers first
        for message_id, chat_id in sorted(due):
            if len(ready) < room and self.limiter.wait(chat_id) <= 0:
                self.limiter.record(chat_id)
                ready.append(message_id)
        return ready

    async def drain(self, stop: asyncio.Event | None = None, *, settle: bool = False) -> int:
        """Send everything due now, per-chat order kept, limits honoured; returns how many were sent.
        With `settle`, also wait for messages that are pending but not yet due (after a 429, a back-off).

        Each round claims every head the limits allow in one transaction, sends them concurrently (one
        at a time, the send rate would be capped at one per round trip to Telegram, about 10 a second
        from a real server), and records the outcomes in one transaction."""
        sent = 0
        while not (stop and stop.is_set()):
            if time.monotonic() >= self._next_recovery:
                recovered = await self.recover()
                if recovered:
                    log.warning("outbox_recovered", messages=recovered)
            pending = await self._heads()
            now = utcnow()
            due = [(m, c) for m, c, not_before in pending if not_before <= now]
            if not due:
                if not (settle and pending):
                    return sent
                soonest = min(not_before for _, _, not_before in pending)
                await asyncio.sleep(min(1.0, max(0.01, (soonest - now).total_seconds())))
                continue
            ready = self._ready(due)
            if not ready:
                limits = min(self.limiter.wait(c) for _, c in due)
                await asyncio.sleep(max(0.005, limits, send_budget.outbox_wait(self.bot)))
                continue
            claimed = await self._claim(ready)
            outcomes = await asyncio.gather(*(self._deliver(message) for message in claimed))
            await self._record(outcomes)
            await self._purge_charts(outcomes)
            sent += sum(outcome.status == OutboxStatus.SENT for outcome in outcomes)
        return sent

    async def run(self, stop: asyncio.Event, idle: float = 0.5) -> None:
        """Runs until stopped, whatever fails on the way: a database that is down at start-up or later only
        delays sending (with back-off), it never ends the sender while the bot looks healthy."""
        delay = idle
        while not stop.is_set():
            try:
                await self.drain(stop)
                delay = idle
            except Exception:
                log.exception("outbox_drain_failed", retry_in=delay)
                delay = min(delay * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _claim(self, message_ids: list[int]) -> list[_Claimed]:
        """Marked `sending` and committed before any call (see the module note)."""
        async with self.session_factory() as session, session.begin():
            rows = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(message_ids), OutboxMessage.status == OutboxStatus.PENDING)
                .values(status=OutboxStatus.SENDING, attempts=OutboxMessage.attempts + 1, updated_at=utcnow())
                .returning(
                    OutboxMessage.id,
                    OutboxMessage.chat_id,
                    OutboxMessage.method,
                    OutboxMessage.payload,
                    OutboxMessage.attempts,
                    OutboxMessage.telegram_message_id,
                )
            )
            claimed = [
                _Claimed(int(i), int(c), m, dict(p), int(a), int(t) if t is not None else None)
                for i, c, m, p, a, t in rows.all()
            ]
        return sorted(claimed, key=lambda message: message.id)

    async def _deliver(self, message: _Claimed) -> _Outcome:
        chat_id, attempts = message.chat_id, message.attempts
        # An id that came back earlier is kept whatever this attempt does (a card waiting for its buttons).
        outcome = _Outcome(message, OutboxStatus.SENT, attempts, result_id=message.telegram_message_id)
        try:
            body = outcome.body = parse_stored(message.method, message.payload)  # a bad row ends `failed`
            try:
                if isinstance(body, SendText) and body.arms_buttons:
                    await self._send_then_arm(message, body, outcome)
                else:
                    result = await self._call(chat_id, body)
                    outcome.result_id = result.message_id if isinstance(result, Message) else None
            finally:
                # Telegram counts a chat's messages as they arrive, somewhere before the answer: spacing
                # the next one from the answer (not the claim, which a commit or the send budget's queue
                # can leave far behind the call) keeps one a second for certain.
                self.limiter.sent_now(chat_id)
        except TelegramRetryAfter as exc:
            self.limiter.pause(chat_id, exc.retry_after)
            outcome.status, outcome.delay, outcome.error = (
                OutboxStatus.PENDING,
                float(exc.retry_after),
                str(exc),
            )
            outcome.attempts -= 1  # waiting out a flood limit is not a failed attempt
        except TelegramMigrateToChat as exc:
            # Not a refusal: the group became a supergroup; this and every later message go there.
            outcome.status, outcome.error = OutboxStatus.PENDING, str(exc)
            outcome.new_chat = int(exc.migrate_to_chat_id)
            outcome.attempts -= 1
        except TRANSIENT as exc:
            # Telegram or the network is down for now: never given up on (a gap in a chat is worse than a
            # late message); the back-off is capped, and a message this stuck is logged for an operator.
            outcome.status, outcome.delay = OutboxStatus.PENDING, min(MAX_BACKOFF, 2.0**attempts)
            outcome.error = str(exc)
            if attempts == STUCK_AFTER:
                log.error("outbox_message_stuck", outbox_id=message.id, chat_id=chat_id, error=str(exc))
        except TelegramBadRequest as exc:
            if "message is not modified" not in exc.message:
                outcome.status, outcome.error = OutboxStatus.FAILED, str(exc)
        except (
            Exception
        ) as exc:  # forbidden, not found, a missing file, ...: a decided state, never `sending`
            outcome.status, outcome.error = OutboxStatus.FAILED, f"{type(exc).__name__}: {exc}"
        return outcome

    async def _send_then_arm(self, message: _Claimed, body: SendText, outcome: _Outcome) -> None:
        """Send the message without its buttons, then put them on the copy whose id came back. A copy sent
        by an earlier attempt whose answer was lost never gets them: only one copy is ever live. Once the
        id is known (outcome.result_id, kept on the row), a later attempt only puts the buttons on; "not
        modified" means an earlier edit did, and its answer was lost."""
        if outcome.result_id is None:
            sent = await self._call(message.chat_id, body.model_copy(update={"reply_markup": None}))
            if not isinstance(sent, Message):
                raise TelegramBadRequest(method=None, message="no message came back")  # type: ignore[arg-type]
            outcome.result_id = sent.message_id
        keyboard = InlineKeyboardMarkup.model_validate(body.reply_markup)
        try:
            await self.bot.edit_message_reply_markup(
                chat_id=message.chat_id, message_id=outcome.result_id, reply_markup=keyboard
            )
        except TelegramBadRequest as exc:
            if "message is not modified" not in exc.message:
                raise

    async def _record(self, outcomes: list[_Outcome]) -> None:
        if not outcomes:
            return
        now = utcnow()
        async with self.session_factory() as session, session.begin():
            for outcome in outcomes:
                error = outcome.error
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == outcome.message.id)
                    .values(
                        status=outcome.status,
                        attempts=outcome.attempts,
                        last_error=error[:1000] if error else None,
                        updated_at=now,
                        not_before=now + dt.timedelta(seconds=outcome.delay),
                        telegram_message_id=outcome.result_id,
                        sent_at=now if outcome.status == OutboxStatus.SENT else None,
                    )
                )
                if outcome.new_chat is not None:
                    await move_chat(session, outcome.message.chat_id, outcome.new_chat)
                anchor = anchor_of(outcome.body) if outcome.body is not None else None
                if outcome.status == OutboxStatus.SENT and anchor and outcome.result_id:
                    kind, key = anchor
                    await self.anchors[kind].remember(
                        session, key, outcome.message.chat_id, outcome.result_id
                    )
        for outcome in outcomes:
            if outcome.status == OutboxStatus.SENT:
                self.sent += 1
            elif outcome.status == OutboxStatus.FAILED:
                log.warning(
                    "outbox_message_failed",
                    outbox_id=outcome.message.id,
                    chat_id=outcome.message.chat_id,
                    error=outcome.error,
                )

    async def _purge_charts(self, outcomes: list[_Outcome]) -> None:
        """A chart leaves the blob store once its message is done (sent, or failed for good), unless a
        message still to be sent carries the same key (a digest's chart goes to each manager's chat). A
        delete that fails or never runs (a crash) is left to the daily sweep
        (jobs/housekeeping.purge_old_charts); it never holds up sending."""
        done = {
            outcome.body.blob_key
            for outcome in outcomes
            if outcome.status in (OutboxStatus.SENT, OutboxStatus.FAILED)
            and isinstance(outcome.body, SendChart)
            and outcome.body.blob_key
        }
        store = self.audio_store
        if not done or store is None:
            return
        try:
            async with self._reading() as session:
                keep = await charts_in_use(session, done)
            for key in sorted(done - keep):
                await asyncio.to_thread(store.delete, key)
        except Exception:
            log.exception("outbox_chart_purge_failed", keys=sorted(done))

    async def _call(self, chat_id: int, body: OutboxMessageBody) -> Any:
        """The one Bot API call each kind of message is sent with (infra/messages.py)."""
        markup = getattr(body, "reply_markup", None)
        keyboard = InlineKeyboardMarkup.model_validate(markup) if markup else None
        match body:
            case SendText():
                return await self.bot.send_message(chat_id, body.text, reply_markup=keyboard)
            case SendVoice():
                return await send_recording(self.bot, self.audio_store, chat_id, body, keyboard)
            case EditText():
                message_id = (
                    body.message_id
                    or await self._anchored_message_id(body)
                    or await self._sent_message_id(body.edit_of)
                )
                if message_id is None:
                    raise TelegramBadRequest(method=None, message="message to edit not found")  # type: ignore[arg-type]
                return await self.bot.edit_message_text(
                    text=body.text, chat_id=chat_id, message_id=message_id, reply_markup=keyboard
                )
            case SendSurveyCode():  # drawn when sent (a small PNG)
                png = await asyncio.to_thread(qr_png, body.link)
                return await self.bot.send_photo(
                    chat_id, BufferedInputFile(png, "survey.png"), caption=body.caption
                )
            case SendChart():
                png = await self._chart_png(body)
                return await self.bot.send_photo(
                    chat_id, BufferedInputFile(png, "chart.png"), caption=body.caption
                )
        assert_never(body)

    async def _chart_png(self, body: SendChart) -> bytes:
        """From the blob store, where any machine's sender finds it; a missing one is not a network fault
        (it would never get better), so the message fails."""
        if body.blob_key:
            store = self.audio_store
            if store is None or not await asyncio.to_thread(store.exists, body.blob_key):
                raise FileNotFoundError(f"chart {body.blob_key} not in the store")
            return await asyncio.to_thread(store.get, body.blob_key)
        # A row queued before charts went to the store: the file on the machine that drew it, if this is it.
        path = Path(body.path or "")
        if not body.path or not await asyncio.to_thread(path.is_file):
            raise FileNotFoundError(body.path)
        return await asyncio.to_thread(path.read_bytes)

    async def _sent_message_id(self, dedupe_key: str | None) -> int | None:
        """The Telegram id of an earlier outbox message (edits queued before it was sent find it here)."""
        if not dedupe_key:
            return None
        async with self._reading() as session:
            return await session.scalar(
                select(OutboxMessage.telegram_message_id).where(OutboxMessage.dedupe_key == dedupe_key)
            )

    async def _anchored_message_id(self, body: EditText) -> int | None:
        anchor = anchor_of(body)
        if anchor is None:
            return None
        async with self._reading() as session:
            return await self.anchors[anchor[0]].find(session, anchor[1])


async def move_chat(session: AsyncSession, old: int, new: int) -> None:
    """A group upgraded to a supergroup: its pending messages and the projects that name it follow."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.chat_id == old, OutboxMessage.status == OutboxStatus.PENDING)
        .values(chat_id=new)
    )
    await session.execute(
        update(Project).where(Project.reviewers_chat_id == old).values(reviewers_chat_id=new)
    )
    await session.execute(update(Project).where(Project.managers_chat_id == old).values(managers_chat_id=new))
    log.warning("chat_migrated", old_chat_id=old, new_chat_id=new)
