"""Admins: create projects and invites from the bot. Every button is re-checked against the database."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.filters import role_router
from models import Invite, Role, User
from services.invites import create_invite, deep_link
from services.projects import (
    NAME_LENGTH,
    ProjectError,
    ProjectProblem,
    create_project,
    get_project,
    list_projects,
)
from services.users import Roles
from telegram_ui.callbacks import InviteCallback
from telegram_ui.texts import role_name
from telegram_ui.times import local_datetime

INVITE_USES = (1, 10, 50)


def _admin_project_ids(roles: Roles) -> list[int] | None:
    """None means every project (global admins from ADMIN_IDS)."""
    return None if roles.is_global_admin else roles.projects(Role.ADMIN)


def split_names(args: str) -> tuple[str, str] | None:
    """/newproject's "Company / Project": split at the first " / " (slash with spaces), so a company named "A/B Foods"
    stays whole; with no " / ", a single "/" still separates ("Acme/Tasting"). Both names are echoed back
    labelled, so a split the admin did not mean shows at once."""
    if " / " in args:
        organisation, _sep, name = args.partition(" / ")
    elif args.count("/") == 1:
        organisation, _sep, name = args.partition("/")
    else:
        return None
    organisation, name = organisation.strip(), name.strip()
    return (organisation, name) if organisation and name else None


async def new_project(message: Message, command: CommandObject, session: AsyncSession, roles: Roles) -> None:
    if not roles.is_global_admin:
        await message.answer(_("admin-global-only"))
        return
    names = split_names(command.args or "")
    if names is None:
        await message.answer(_("newproject-usage"))
        return
    organisation, name = names
    try:
        project = await create_project(session, organisation, name)
    except ProjectError as exc:
        if exc.problem == ProjectProblem.TOO_LONG:
            await message.answer(_("newproject-too-long").format(limit=NAME_LENGTH))
        else:
            await message.answer(_("newproject-exists"))
        return
    await message.answer(
        _("newproject-created").format(
            project=hd.quote(project.name), org=hd.quote(project.organisation.name), id=project.id
        )
    )


async def projects(message: Message, session: AsyncSession, roles: Roles) -> None:
    found = await list_projects(session, _admin_project_ids(roles))
    if not found:
        await message.answer(_("projects-none"))
        return
    lines = [_("projects-header")]
    lines += [f"#{p.id} {hd.quote(p.organisation.name)} / {hd.quote(p.name)}" for p in found]
    await message.answer("\n".join(lines))


async def invite_start(message: Message, session: AsyncSession, roles: Roles) -> None:
    found = await list_projects(session, _admin_project_ids(roles))
    if not found:
        await message.answer(_("projects-none"))
        return
    keyboard = InlineKeyboardBuilder()
    for project in found:
        keyboard.button(
            text=f"{project.organisation.name} / {project.name}",
            callback_data=InviteCallback(project_id=project.id),
        )
    keyboard.adjust(1)
    await message.answer(_("invite-choose-project"), reply_markup=keyboard.as_markup())


async def invite_step(
    query: CallbackQuery,
    callback_data: InviteCallback,
    session: AsyncSession,
    roles: Roles,
    user: User,
    bot: Bot,
) -> None:
    allowed = _admin_project_ids(roles)
    project = await get_project(session, callback_data.project_id)
    if project is None or (allowed is not None and project.id not in allowed):
        await query.answer(_("button-forbidden"), show_alert=True)
        return
    if not isinstance(query.message, Message):
        await query.answer(_("button-invalid"), show_alert=True)
        return
    if callback_data.role is None:
        await query.message.edit_text(
            _("invite-choose-role").format(project=hd.quote(project.name)),
            reply_markup=_role_keyboard(project.id),
        )
    elif callback_data.uses is None:
        await query.message.edit_text(
            _("invite-choose-uses"), reply_markup=_uses_keyboard(project.id, callback_data.role)
        )
    else:
        if callback_data.uses not in INVITE_USES:
            await query.answer(_("button-invalid"), show_alert=True)
            return
        invite = await create_invite(
            session, project.id, callback_data.role, max_uses=callback_data.uses, created_by=user
        )
        me = await bot.me()
        await query.message.edit_text(_invite_text(invite, project.name, project.timezone, me.username or ""))
    await query.answer()


def _role_keyboard(project_id: int) -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    for role in (Role.PROMOTER, Role.REVIEWER, Role.MANAGER, Role.ADMIN, Role.CLIENT):
        keyboard.button(text=role_name(role), callback_data=InviteCallback(project_id=project_id, role=role))
    keyboard.adjust(2)
    return keyboard.as_markup()


def _uses_keyboard(project_id: int, role: Role) -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    for uses in INVITE_USES:
        keyboard.button(
            text=str(uses), callback_data=InviteCallback(project_id=project_id, role=role, uses=uses)
        )
    return keyboard.as_markup()


def _invite_text(invite: Invite, project_name: str, zone: str, bot_username: str) -> str:
    expires = local_datetime(invite.expires_at, zone) if invite.expires_at else "-"  # the project's zone
    return _("invite-created").format(
        project=hd.quote(project_name),
        role=role_name(invite.role),
        uses=invite.max_uses,
        expires=expires,
        link=hd.quote(deep_link(bot_username, invite)),
    )


def create_router() -> Router:
    router = role_router(__name__, Role.ADMIN)
    router.message.register(new_project, Command("newproject"))
    router.message.register(projects, Command("projects"))
    router.message.register(invite_start, Command("invite"))
    router.callback_query.register(invite_step, InviteCallback.filter())
    return router
