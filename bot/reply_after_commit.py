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
DbSessionMiddleware at the end (a sent message's id remembered, a state set after the answer), and that
one commits durably (services.db.replayable says why the first need not).
"""

from __future__ import annotations

from typing import Any

import structlog
from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import Response, TelegramMethod
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from bot.fsm_storage import UPDATE_SESSION
from services.db import durable_from_here
from services.updates import BOOKKEEPING, WRITES, mark_bookkeeping

log = structlog.get_logger(__name__)
REPLIED = "replied_to_telegram"  # session.info key: the update's own work was committed before a call


def _count_write(session: Session) -> None:
    session.info[WRITES] = session.info.get(WRITES, 0) + 1


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _count_write(state.session)


@event.listens_for(Session, "after_flush")
def _on_flush(session: Session, _context: Any) -> None:
    if session.new or session.dirty or session.deleted:
        _count_write(session)


def work_written(session: AsyncSession) -> bool:
    """Anything written since the update's claim (the person's input, its effects)."""
    return bool(session.info.get(WRITES, 0) > session.info.get(BOOKKEEPING, 0))


class CommitBeforeReplyMiddleware(BaseRequestMiddleware):
    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        session = UPDATE_SESSION.get()
        if session is not None and session.in_transaction():
            work = work_written(session)
            await session.commit()
            durable_from_here()  # the inbox removal is kept: later writes of this update have no replay
            if work:  # the person's input is kept now, whatever happens next
                session.info[REPLIED] = True
            mark_bookkeeping(session)  # later writes are counted afresh
        return await make_request(bot, method)
