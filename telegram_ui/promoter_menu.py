"""The promoter's reply keyboard and the voice enrolment prompt: shown by the promoter's router and by the
invite acceptance in the common router, so it lives in neither."""

from __future__ import annotations

from aiogram.fsm.context import FSMContext
from aiogram.types import KeyboardButton, Message, ReplyKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from telegram_ui.states import Enrolment

MENU_NEW = __("menu-new-contact")
MENU_MY = __("menu-my-results")


def menu_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=str(MENU_NEW)), KeyboardButton(text=str(MENU_MY))]],
        resize_keyboard=True,
    )


async def offer_enrolment(message: Message, state: FSMContext) -> None:
    await state.set_state(Enrolment.recording)
    await message.answer(_("enrol-prompt").format(phrase=_("enrol-phrase")), reply_markup=menu_keyboard())
