"""Everyone: /start (with invite deep links), /help, /lang."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from models import Role, User
from services.intake import has_enrolment
from services.invites import INVITE_PREFIX, InviteError, accept_invite
from services.unit_of_work import UpdateUnit
from services.users import Roles, set_locale
from telegram_ui.callbacks import LangCallback
from telegram_ui.i18n import LANGUAGE_NAMES, LOCALES
from telegram_ui.promoter_menu import offer_enrolment
from telegram_ui.texts import invite_problem, role_name


async def start_with_invite(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    unit: UpdateUnit,
    user: User,
    state: FSMContext,
) -> None:
    try:
        membership, created = await accept_invite(session, user, command.args or "")
    except InviteError as exc:
        await message.answer(invite_problem(exc.problem))
        return
    text = _("invite-accepted") if created else _("invite-already")
    await message.answer(
        text.format(project=hd.quote(membership.project.name), role=role_name(membership.role))
    )
    if membership.role == Role.CLIENT and membership.project.client_survey_months > 0:
        await message.answer(_("client-welcome").format(months=membership.project.client_survey_months))
    if membership.role == Role.PROMOTER and not await has_enrolment(session, user):
        await unit.keep_so_far()  # the membership stands even if the prompt below fails
        await offer_enrolment(message, state)


async def start(message: Message, user: User, roles: Roles) -> None:
    lines = [_("start-welcome").format(name=hd.quote(user.first_name or user.display_name))]
    if roles.memberships:
        lines.append(_("start-roles"))
        lines += [f"• {hd.quote(m.project.name)}: {role_name(m.role)}" for m in roles.memberships]
    elif roles.is_global_admin:
        lines.append(_("start-global-admin"))
    else:
        lines.append(_("start-no-roles"))
    lines.append(_("start-help-hint"))
    await message.answer("\n".join(lines))


async def help_command(message: Message, roles: Roles) -> None:
    parts = [_("help-common")]
    if roles.has(Role.PROMOTER):
        parts.append(_("help-promoter"))
    if roles.has(Role.REVIEWER):
        parts.append(_("help-reviewer"))
    if roles.has(Role.MANAGER) or roles.is_global_admin:
        parts.append(_("help-manager"))
    if roles.has(Role.ADMIN):
        parts.append(_("help-admin"))
    await message.answer("\n\n".join(parts))


async def choose_language(message: Message) -> None:
    keyboard = InlineKeyboardBuilder()
    for code, name in LANGUAGE_NAMES.items():
        keyboard.button(text=name, callback_data=LangCallback(code=code))
    await message.answer(_("lang-choose"), reply_markup=keyboard.as_markup())


async def set_language(
    query: CallbackQuery, callback_data: LangCallback, session: AsyncSession, user: User, i18n: I18n
) -> None:
    if callback_data.code not in LOCALES:  # forged payload
        await query.answer(_("button-invalid"), show_alert=True)
        return
    await set_locale(session, user, callback_data.code)
    with i18n.use_locale(callback_data.code):
        await query.answer()
        if isinstance(query.message, Message):
            await query.message.edit_text(_("lang-set"))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(
        start_with_invite, CommandStart(deep_link=True, magic=F.args.startswith(INVITE_PREFIX))
    )
    router.message.register(start, CommandStart())
    router.message.register(help_command, Command("help"))
    router.message.register(choose_language, Command("lang"))
    router.callback_query.register(set_language, LangCallback.filter())
    return router
