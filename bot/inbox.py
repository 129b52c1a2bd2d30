"""Receiving updates durably: polling and the webhook put each update in the inbox before Telegram is
told it arrived, handle it, then remove it (infra/inbox.py says why this loses nothing).

aiogram's own polling asks for the next batch (acknowledging the last) while the last is still being
handled, and its webhook handler answers 200 before handling: either way a process killed mid-update
lost it. This module replaces both entry points; the Dispatcher and its middlewares are unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
from typing import Any

import structlog
from aiogram import Bot, Dispatcher
from aiogram.methods import GetUpdates
from aiogram.types import Update
from aiogram.utils.i18n import I18n
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.throttle import Throttle, sender_of
from infra import inbox
from models.base import utcnow
from telegram_ui import notify
from telegram_ui.i18n import pick_locale

log = structlog.get_logger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SWEEP_EVERY = 60.0  # seconds between looks for rows left behind while running
SWEEP_AFTER = dt.timedelta(minutes=2)


class UpdateInbox:
    def __init__(
        self,
        bot: Bot,
        dp: Dispatcher,
        session_factory: async_sessionmaker[AsyncSession],
        i18n: I18n,
        *,
        polling_timeout: int = 30,
        throttle: Throttle | None = None,
    ) -> None:
        self.bot, self.dp, self.session_factory, self.i18n = bot, dp, session_factory, i18n
        self.throttle = throttle
        self.polling_timeout = polling_timeout
        self.started = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: set[int] = set()  # update ids being handled now
        self._told_unavailable: set[int] = set()  # chats told of the current database outage

    async def accept(self, payloads: list[dict[str, Any]]) -> None:
        """Store, then handle in the background; raises if the store failed (then nothing is acknowledged,
        and Telegram delivers the updates again: the people who sent them are told to wait, not to resend).
        A flood is cut first (bot/throttle.py): what the throttle refuses is answered and never stored."""
        payloads = self._admitted(payloads)
        if not payloads:
            return
        try:
            async with self.session_factory() as session, session.begin():
                await inbox.store(session, self.bot.id, payloads)
        except Exception:
            await self._tell_unavailable(payloads)
            raise
        self._told_unavailable.clear()
        for payload in payloads:
            self._spawn(Update.model_validate(payload, context={"bot": self.bot}))

    def _admitted(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.throttle is None:
            return payloads
        admitted = []
        for payload in payloads:
            ok, tell = self.throttle.admit(payload)
            if ok:
                admitted.append(payload)
                continue
            log.info("throttled", update_id=payload.get("update_id"))
            if tell:
                task = asyncio.create_task(self._tell_throttled(payload))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return admitted

    def _text_for(self, payload: dict[str, Any], key: str) -> str:
        """A notice in the sender's Telegram language (no database read: these go out when it is down or
        is being spared)."""
        language = str(sender_of(payload).get("language_code") or "")[:2]
        with self.i18n.context(), self.i18n.use_locale(pick_locale(None, language, self.i18n.default_locale)):
            return self.i18n.gettext(key)

    async def _tell_throttled(self, payload: dict[str, Any]) -> None:
        text = self._text_for(payload, "throttled")
        update = Update.model_validate(payload, context={"bot": self.bot})
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(text)
            elif update.message is not None:
                await update.message.answer(text)
        except Exception:  # only the notice is lost; the refused update was never going to be handled
            log.warning("throttle_notice_failed", update_id=update.update_id)

    def _spawn(self, update: Update) -> None:
        task = asyncio.create_task(self._handle(update))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, update: Update) -> None:
        """The row leaves the inbox inside the update's own transaction (DeduplicateUpdatesMiddleware), or
        in the error handler when that transaction rolled back; a crash leaves it for recover()/sweep()."""
        self._active.add(update.update_id)
        try:
            await self.dp.feed_update(self.bot, update)
        except Exception:  # the error router answers people; this is only what escaped it
            log.exception("update_failed", update_id=update.update_id)
        finally:
            self._active.discard(update.update_id)

    async def sweep(self) -> int:
        """Rows left behind while running (a failed removal, a lost task): handed over again, never twice at once."""
        cutoff = utcnow() - SWEEP_AFTER
        async with self.session_factory() as session:
            rows = await inbox.older_than(session, self.bot.id, cutoff)
        stale = [r for r in rows if r.update_id not in self._active]
        for row in stale:
            self._spawn(Update.model_validate(row.payload, context={"bot": self.bot}))
        if stale:
            log.warning("inbox_swept", updates=len(stale))
        return len(stale)

    async def sweep_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_EVERY)
            if not stop.is_set():
                try:
                    await self.sweep()
                except Exception:
                    log.exception("inbox_sweep_failed")

    async def recover(self) -> int:
        """Finish what a killed process left; an update that keeps crashing is given up, its sender told."""
        async with self.session_factory() as session, session.begin():
            rows = await inbox.take_pending(session, self.bot.id)
            poison = [r for r in rows if r.attempts >= inbox.MAX_RECOVERIES]
            for row in poison:
                await self._give_up(session, row.payload)
                await inbox.done(session, self.bot.id, row.update_id)
        for row in rows:
            if row not in poison:
                self._spawn(Update.model_validate(row.payload, context={"bot": self.bot}))
        if rows:
            log.warning("inbox_recovered", updates=len(rows) - len(poison), given_up=len(poison))
        return len(rows) - len(poison)

    async def _tell_unavailable(self, payloads: list[dict[str, Any]]) -> None:
        """Straight to Telegram (the outbox lives in the unreachable database), once per chat per outage."""
        for payload in payloads:
            source = payload.get("message") or payload.get("callback_query") or {}
            chat = (source.get("message") or source).get("chat") or {}
            chat_id = chat.get("id") if chat.get("type", "private") == "private" else None
            if chat_id is None or chat_id in self._told_unavailable:
                continue
            self._told_unavailable.add(chat_id)
            text = self._text_for(payload, "inbox-unavailable")
            try:
                await self.bot.send_message(chat_id, text)
            except Exception:  # Telegram unreachable too: the update itself is still not acknowledged
                log.warning("unavailable_notice_failed", chat_id=chat_id)
        log.error("inbox_store_failed", updates=len(payloads), told=len(self._told_unavailable))

    async def _give_up(self, session: AsyncSession, payload: dict[str, Any]) -> None:
        source = payload.get("message") or payload.get("callback_query") or {}
        chat_id = (source.get("chat") or {}).get("id") or sender_of(payload).get("id")
        log.error("inbox_update_given_up", update_id=payload.get("update_id"))
        if chat_id is None:
            return
        await notify.queue_notice(session, int(chat_id), self._text_for(payload, "inbox-given-up"))

    async def wait_handled(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def poll(self, stop: asyncio.Event) -> None:
        """Long polling: a batch is acknowledged (the next offset) only once it is in the inbox."""
        await self.recover()
        sweeper = asyncio.create_task(self.sweep_forever(stop))
        allowed = self.dp.resolve_used_update_types()
        offset: int | None = None
        delay = 1.0
        self.started.set()
        while not stop.is_set():
            try:
                method = GetUpdates(offset=offset, timeout=self.polling_timeout, allowed_updates=allowed)
                updates = await self._until(stop, self.bot(method))
                if updates is None:
                    break
                if updates:
                    await self.accept([u.model_dump(mode="json", exclude_none=True) for u in updates])
                    offset = updates[-1].update_id + 1
                delay = 1.0
            except Exception:  # Telegram or the database unreachable: nothing acknowledged, try again later
                log.exception("polling_failed", retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)
        await sweeper

    @staticmethod
    async def _until(stop: asyncio.Event, call: Any) -> Any:
        """The call's result, or None when stop is set first (a long poll is cut short, not waited out)."""
        request = asyncio.ensure_future(call)
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({request, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if request in done:
            return request.result()
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await request
        return None

    def webhook_handler(self, secret: str | None) -> Any:
        """Refuses any request without Telegram's secret header, compared in constant time (a timing
        difference would let a stranger guess the secret byte by byte) and logged without the header."""
        expected = secret.encode() if secret is not None else None

        async def handle(request: web.Request) -> web.Response:
            given = request.headers.get(SECRET_HEADER, "").encode()
            if expected is not None and not hmac.compare_digest(given, expected):
                log.warning(
                    "webhook_refused",
                    remote=request.remote,
                    reason="secret header missing" if not given else "secret header wrong",
                )
                return web.Response(status=401, text="Unauthorized")
            try:
                payload = await request.json()
            except ValueError:
                log.warning("webhook_refused", remote=request.remote, reason="body is not JSON")
                return web.Response(status=400, text="Bad Request")
            try:
                await self.accept([payload])
            except Exception:  # not stored: a non-2xx makes Telegram deliver it again later
                log.exception("webhook_store_failed", update_id=payload.get("update_id"))
                return web.Response(status=503, text="try again")
            return web.json_response({})

        return handle
