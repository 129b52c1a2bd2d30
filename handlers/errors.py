"""The last line: log any unhandled error with its context and tell the person, in their language."""

from __future__ import annotations

import structlog
from aiogram import Bot, Router
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra import inbox
from services.unit_of_work import UpdateUnit
from telegram_ui.i18n import pick_locale

log = structlog.get_logger(__name__)


async def on_error(
    event: ErrorEvent,
    bot: Bot,
    i18n: I18n,
    session_factory: async_sessionmaker[AsyncSession],
    unit: UpdateUnit | None = None,
) -> bool:
    """`unit.input_kept`: the person's input was committed before the error (a reply that failed after
    it): they are told it is kept, never that it was lost."""
    saved_before_error = unit is not None and unit.input_kept
    update = event.update
    query, message = update.callback_query, update.message
    origin = query or message
    sender = origin.from_user if origin is not None else None
    log.exception(
        "handler_failed",
        update_id=update.update_id,
        error=repr(event.exception),
        telegram_id=sender.id if sender else None,
        exc_info=event.exception,
        saved_before_error=saved_before_error,
    )
    locale = pick_locale(None, sender.language_code if sender else None, i18n.default_locale)
    with i18n.context(), i18n.use_locale(locale):
        text = _("error-after-save") if saved_before_error else _("error-generic")
    try:  # the update's own transaction rolled back with the inbox row: the person is told, so it goes now
        async with session_factory() as session, session.begin():
            await inbox.done(session, bot.id, update.update_id)
    except Exception:  # left in the inbox: the sweep hands it over again
        log.exception("inbox_done_failed", update_id=update.update_id)
    try:
        if query is not None:
            await query.answer(text, show_alert=True)
        elif message is not None:
            await bot.send_message(message.chat.id, text)
    except Exception:  # the error reply itself failed: the log above is what remains
        log.exception("error_reply_failed", update_id=update.update_id)
    return True


def create_router() -> Router:
    router = Router(name=__name__)
    router.errors.register(on_error)
    return router
