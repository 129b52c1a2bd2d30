"""Outer middlewares, in order: in-flight count, DB session, update de-duplication, current user and roles,
locale, throttle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware, Bot
from aiogram.types import CallbackQuery, Message, TelegramObject, Update
from aiogram.types import User as TgUser
from aiogram.utils.i18n import I18n, I18nMiddleware
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.fsm_storage import UPDATE_SESSION
from bot.i18n import LOCALES, pick_locale
from services import inbox
from services.updates import claim_update
from services.users import TelegramIdentity, get_or_create_user, load_roles

log = structlog.get_logger(__name__)
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class InFlightMiddleware(BaseMiddleware):
    """Counts updates being handled (commit included), so shutdown and tests can wait until all settle."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        self.count += 1
        self._idle.clear()
        try:
            return await handler(event, data)
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class DbSessionMiddleware(BaseMiddleware):
    """One session and one transaction per update: committed if the handler returns, rolled back if it raises."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        async with self.session_factory() as session:
            data["session"] = session
            token = UPDATE_SESSION.set(session)
            try:
                result = await handler(event, data)
                await session.commit()
            finally:
                UPDATE_SESSION.reset(token)
            return result


class DeduplicateUpdatesMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        bot: Bot = data["bot"]
        session: AsyncSession = data["session"]
        claimed = await claim_update(session, bot.id, event.update_id)
        # Out of the inbox in this same transaction: handled (or known duplicate) exactly when it commits.
        await inbox.done(session, bot.id, event.update_id)
        if not claimed:
            log.info("duplicate_update_skipped", update_id=event.update_id)
            return None
        structlog.contextvars.bind_contextvars(update_id=event.update_id)
        try:
            return await handler(event, data)
        finally:
            structlog.contextvars.unbind_contextvars("update_id")


class CurrentUserMiddleware(BaseMiddleware):
    """Puts `user` (models.User) and `roles` (services.users.Roles) into handler data."""

    def __init__(self, admin_ids: list[int]) -> None:
        self.admin_ids = admin_ids

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        tg_user: TgUser | None = data.get("event_from_user")
        if tg_user is None or tg_user.is_bot:
            return await handler(event, data)
        session: AsyncSession = data["session"]
        language = (tg_user.language_code or "")[:2].lower()
        identity = TelegramIdentity(
            tg_user.id,
            tg_user.first_name,
            tg_user.last_name,
            tg_user.username,
            language if language in LOCALES else None,
        )
        user = await get_or_create_user(session, identity)
        data["user"] = user
        data["roles"] = await load_roles(session, user, self.admin_ids)
        return await handler(event, data)


class LocaleMiddleware(I18nMiddleware):
    """The user's chosen language, else their Telegram client's, else the configured default."""

    def __init__(self, i18n: I18n) -> None:
        super().__init__(i18n)

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user = data.get("user")
        tg_user: TgUser | None = data.get("event_from_user")
        return pick_locale(
            user.locale if user is not None else None,
            tg_user.language_code if tg_user else None,
            self.i18n.default_locale,
        )


def _carries_a_recording(event: TelegramObject) -> bool:
    message = event.message if isinstance(event, Update) else None
    return message is not None and bool(
        message.voice or message.audio or message.document or message.video_note
    )


class ThrottlingMiddleware(BaseMiddleware):
    """Token bucket per user: a flood of texts and presses is answered once and dropped, everyone else stays
    responsive; recordings always go through (they are few, and each is a contact someone is paid for)."""

    def __init__(self, rate_per_second: float, burst: int) -> None:
        self.rate, self.burst = rate_per_second, burst
        self._buckets: dict[int, tuple[float, float, bool]] = {}  # user -> (tokens, last time, warned)

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        tg_user: TgUser | None = data.get("event_from_user")
        if tg_user is None or self.rate <= 0:
            return await handler(event, data)
        if _carries_a_recording(event):  # a recording is a paid contact: never dropped, whatever the rate
            return await handler(event, data)
        now = time.monotonic()
        tokens, last, warned = self._buckets.get(tg_user.id, (float(self.burst), now, False))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[tg_user.id] = (tokens - 1, now, False)
            return await handler(event, data)
        self._buckets[tg_user.id] = (tokens, now, True)
        log.info("throttled", telegram_id=tg_user.id)
        if isinstance(event, Update):
            inner = event.callback_query or event.message
            if isinstance(inner, CallbackQuery) or (isinstance(inner, Message) and not warned):
                await inner.answer(_("throttled"))
        if len(self._buckets) > 100_000:  # bound memory on a long-running process
            self._buckets.clear()
        return None
