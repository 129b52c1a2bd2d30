"""A promoter's results (/my) and disputes of a verdict."""

from __future__ import annotations

from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    Message,
)
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from models import Role, User
from services import intake
from services.unit_of_work import UpdateUnit
from services.users import Roles
from telegram_ui.callbacks import DisputeButton
from telegram_ui.promoter_menu import menu_keyboard
from telegram_ui.states import Disputing
from telegram_ui.texts import dispute_problem


async def my_results(message: Message, session: AsyncSession, user: User, roles: Roles) -> None:
    parts = []
    keyboard = InlineKeyboardBuilder()
    for membership in roles.memberships:
        if membership.role != Role.PROMOTER:
            continue
        stats = await intake.promoter_stats(session, user, membership.project)
        rate = f"{stats.approval_rate:.0%}" if stats.approval_rate is not None else "—"
        average = f"{stats.average_score:.0f}%" if stats.average_score is not None else "—"
        lines = [
            f"<b>{hd.quote(membership.project.name)}</b>",
            _("my-counts").format(today=stats.today, week=stats.week),
            _("my-quality").format(reviewed=stats.reviewed, rate=rate, average=average),
        ]
        if stats.last_feedback:
            fb = stats.last_feedback
            lines.append(
                _("my-last-feedback").format(
                    id=fb.contact_id, score=f"{fb.score:.0f}", comment=hd.quote(fb.comment or "—")
                )
            )
        parts.append("\n".join(lines))
        for contact_id in stats.disputable:
            keyboard.button(
                text=_("my-dispute-button").format(id=contact_id),
                callback_data=DisputeButton(contact_id=contact_id),
            )
    keyboard.adjust(1)
    await message.answer("\n\n".join(parts) or _("my-none"), reply_markup=keyboard.as_markup())


async def dispute_pressed(
    query: CallbackQuery, callback_data: DisputeButton, state: FSMContext, session: AsyncSession, user: User
) -> None:
    try:
        await intake.check_disputable(session, user, callback_data.contact_id)
    except intake.DisputeError as exc:
        await query.answer(dispute_problem(exc.problem), show_alert=True)
        return
    await state.set_state(Disputing.reason)
    await state.set_data({"contact_id": callback_data.contact_id})
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(_("dispute-ask-reason").format(id=callback_data.contact_id))


async def dispute_reason(
    message: Message, state: FSMContext, session: AsyncSession, unit: UpdateUnit, user: User
) -> None:
    contact_id = int((await state.get_data()).get("contact_id", 0))
    try:
        await intake.open_dispute(session, user, contact_id, message.text or "")
    except intake.DisputeError as exc:
        await message.answer(dispute_problem(exc.problem))
        if exc.problem != intake.DisputeProblem.EMPTY_REASON:
            await state.clear()
        return
    await state.clear()
    await unit.keep_so_far()  # the dispute stands even if the answer below fails
    await message.answer(_("dispute-opened").format(id=contact_id), reply_markup=menu_keyboard())
