"""Request middleware: an update's transaction commits before the bot says anything to Telegram.

Why: on SQLite every transaction holds the write lock from its first statement (BEGIN IMMEDIATE), and on
PostgreSQL an open transaction holds a connection. A reply is a network call (tens to hundreds of ms to
the real Telegram, seconds while a flood limit is waited out), so a reply inside the transaction made
every other update wait behind it. Committing first also means that what the person is told is already
true: a receipt is never sent for a contact that a later rollback would take back.

What it costs: the de-duplication marker commits with the first part, so a process killed between that
commit and the reply leaves the reply unsent (the update is not handled twice). For a receipt this is
covered by intake itself: the promoter who sends the same recording again is told it was received.
Whatever a handler writes after its first reply goes into a second short transaction, committed by
DbSessionMiddleware at the end (a sent message's id remembered, a state set after the answer).
"""

from __future__ import annotations

from typing import Any

import structlog
from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import Response, TelegramMethod

from bot.fsm_storage import UPDATE_SESSION

log = structlog.get_logger(__name__)
REPLIED = "replied_to_telegram"  # session.info key: a part of this update was committed before a call


class CommitBeforeReplyMiddleware(BaseRequestMiddleware):
    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        session = UPDATE_SESSION.get()
        if session is not None and session.in_transaction():
            await session.commit()
            session.info[REPLIED] = True
        return await make_request(bot, method)
