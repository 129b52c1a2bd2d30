"""Anything no other router took: say so instead of staying silent."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from telegram_ui.states import Intake


async def form_without_role(message: Message, state: FSMContext) -> None:
    """A form left open by someone who is no longer a promoter anywhere: say so, and close it."""
    await state.clear()
    await message.answer(_("intake-not-member-any"))


async def cancel_anything(message: Message, state: FSMContext) -> None:
    """/cancel for everyone who is not in a promoter's form (the promoter router has its own): whatever the
    bot was waiting for (a resolution note, report dates, a comment) is dropped."""
    await state.clear()
    await message.answer(_("cancelled-generic"))


async def not_understood(message: Message) -> None:
    await message.answer(_("fallback-message"))


async def edit_not_applied(message: Message) -> None:
    """An edit of a message the bot already acted on changes nothing; say so rather than stay silent."""
    await message.answer(_("edit-not-applied"))


async def stale_button(query: CallbackQuery) -> None:
    await query.answer(_("button-invalid"), show_alert=True)


def create_router() -> Router:
    router = Router(name=__name__)
    # The promoter router, registered before this one, only sees people who are still promoters.
    router.message.register(form_without_role, StateFilter(Intake.answering, Intake.recording))
    router.message.register(cancel_anything, Command("cancel"), F.chat.type == "private")
    router.message.register(not_understood, F.chat.type == "private")
    router.edited_message.register(edit_not_applied, F.chat.type == "private")
    router.callback_query.register(stale_button)
    return router
