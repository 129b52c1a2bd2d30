"""Outer middlewares, in order: in-flight count, DB session, update de-duplication, current user and roles,
locale. Flood control runs before all of them, at the inbox's door (bot/throttle.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware, Bot
from aiogram.types import TelegramObject, Update
from aiogram.types import User as TgUser
from aiogram.utils.i18n import I18n, I18nMiddleware
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.unit_of_work import UpdateUnit, update_unit
from services.users import TelegramIdentity, user_and_roles
from telegram_ui.i18n import LOCALES, pick_locale

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
    """Opens the update's unit of work (services/unit_of_work.py, where its work commits) and hands it to
    handlers as `unit`, its session as `session`. The error handler reads `unit.input_kept`."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        async with update_unit(self.session_factory) as unit:
            data["unit"], data["session"] = unit, unit.session
            return await handler(event, data)


class DeduplicateUpdatesMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        bot: Bot = data["bot"]
        unit: UpdateUnit = data["unit"]
        if not await unit.claim(bot.id, event.update_id):
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
        unit: UpdateUnit = data["unit"]
        language = (tg_user.language_code or "")[:2].lower()
        identity = TelegramIdentity(
            tg_user.id,
            tg_user.first_name,
            tg_user.last_name,
            tg_user.username,
            language if language in LOCALES else None,
        )
        data["user"], data["roles"] = await user_and_roles(unit.session, identity, self.admin_ids)
        unit.mark_bookkeeping()  # knowing who wrote is not keeping what they wrote
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
