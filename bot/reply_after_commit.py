"""Request middleware: an update's transaction commits before the bot says anything to Telegram.

A thin adapter: the rule, and why (the write lock, a receipt that is already true, what it costs), live
with the update's unit of work in services/unit_of_work.py (`UpdateUnit.before_telegram_call`). Outermost
on the Bot's session, so the commit happens once, before any retry.
"""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import Response, TelegramMethod

from services.unit_of_work import current_unit


class CommitBeforeReplyMiddleware(BaseRequestMiddleware):
    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        unit = current_unit()
        if unit is not None:
            await unit.before_telegram_call()
        return await make_request(bot, method)
