"""Anything no other router took: say so instead of staying silent."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

router = Router(name=__name__)


@router.message(F.chat.type == "private")
async def not_understood(message: Message) -> None:
    await message.answer(_("fallback-message"))


@router.callback_query()
async def stale_button(query: CallbackQuery) -> None:
    await query.answer(_("button-invalid"), show_alert=True)
