"""Managers: the buttons under an alert ("Open contact", "I take it", "Resolved" with a one-line note).

Who may press is decided by services.alerts from the alert's own project, never from the message.
"""

from __future__ import annotations

import contextlib

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.alert_cards import AlertAction, AlertButton, enqueue_alert_updates
from handlers.cards import card_voice, contact_text, rendered
from models import Contact, User
from services import alerts, surveys
from services.alerts import AlertError, AlertProblem
from services.outbox import enqueue
from services.users import Roles


class Resolving(StatesGroup):
    note = State()


def alert_problem(problem: AlertProblem) -> str:
    return {
        AlertProblem.UNKNOWN: _("alert-unknown"),
        AlertProblem.NOT_MANAGER: _("alert-not-manager"),
        AlertProblem.TAKEN: _("alert-taken-other"),
        AlertProblem.RESOLVED: _("alert-already-resolved"),
    }[problem]


async def on_alert_button(
    query: CallbackQuery,
    callback_data: AlertButton,
    session: AsyncSession,
    user: User,
    roles: Roles,
    state: FSMContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    admin = roles.is_global_admin
    try:
        if callback_data.action == AlertAction.OPEN:
            alert = await alerts.visible(session, callback_data.id, user, admin)
            contact = await session.get(Contact, alert.contact_id) if alert.contact_id else None
            if contact is None or not isinstance(query.message, Message):
                raise AlertError(AlertProblem.UNKNOWN)
            await query.answer()
            voice = await card_voice(session, contact.id)
            if voice:
                with contextlib.suppress(TelegramAPIError):  # voice notes refused here: the text still goes
                    await bot.send_voice(query.message.chat.id, voice)
            await query.message.answer(await contact_text(session, contact, i18n.current_locale))
        elif callback_data.action == AlertAction.TAKE:
            alert = await alerts.take(session, callback_data.id, user, admin)
            await enqueue_alert_updates(session, i18n, alert)
            await query.answer(_("alert-taken-you"))
        else:
            alert = await alerts.check_resolvable(session, callback_data.id, user, admin)
            await state.set_state(Resolving.note)
            await state.update_data(alert_id=alert.id)
            await query.answer()
            if isinstance(query.message, Message):
                await query.message.answer(
                    _("alert-resolve-prompt").format(id=alert.id, name=hd.quote(user.display_name))
                )
    except AlertError as exc:
        await query.answer(alert_problem(exc.problem), show_alert=True)


async def on_resolution_note(
    message: Message, session: AsyncSession, user: User, roles: Roles, state: FSMContext, i18n: I18n
) -> None:
    alert_id = int((await state.get_data()).get("alert_id", 0))
    await state.clear()
    try:
        alert = await alerts.resolve(session, alert_id, user, roles.is_global_admin, message.text or "")
    except AlertError as exc:
        await message.answer(alert_problem(exc.problem))
        return
    await enqueue_alert_updates(session, i18n, alert)
    customer = await surveys.customer_of(session, alert)
    if customer is not None:
        chat_id, locale = customer
        text = rendered(i18n, locale, lambda: _("survey-thanks-resolved"))
        await enqueue(session, chat_id, "sendMessage", {"text": text}, dedupe_key=f"alert-thanks:{alert.id}")
    await message.answer(_("alert-resolved-you").format(id=alert.id))


async def on_resolution_not_text(message: Message) -> None:
    await message.answer(_("alert-resolve-text-only"))


def create_router() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_alert_button, AlertButton.filter())
    router.message.register(on_resolution_note, Resolving.note, F.text, ~F.text.startswith("/"))
    router.message.register(on_resolution_not_text, Resolving.note, ~F.text)
    return router
