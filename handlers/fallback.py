"""Anything no other router took: say so instead of staying silent."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _


async def not_understood(message: Message) -> None:
    await message.answer(_("fallback-message"))


async def stale_button(query: CallbackQuery) -> None:
    await query.answer(_("button-invalid"), show_alert=True)


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(not_understood, F.chat.type == "private")
    router.callback_query.register(stale_button)
    return router
