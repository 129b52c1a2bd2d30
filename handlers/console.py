"""`/console`: a manager's, admin's or client contact's one-time sign-in link to the web console (web/), and, where the
console has a public https address, a Mini App button and the chat's menu button that open it in Telegram."""

from __future__ import annotations

import contextlib
import datetime as dt

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    MenuButtonWebApp,
    Message,
    WebAppInfo,
)
from aiogram.utils.i18n import get_i18n
from sqlalchemy.ext.asyncio import AsyncSession

from infra.settings import Settings
from models import Role, User
from services.console_auth import create_link
from services.users import Roles
from web.app import public_url
from web.i18n import text


def may_use_console(roles: Roles) -> bool:
    """Managers and admins; a client contact too, for their projects' billing and NPS (web/ scopes it)."""
    return (
        roles.is_global_admin
        or roles.has(Role.MANAGER)
        or roles.has(Role.CLIENT)
        or any(m.role == Role.ADMIN for m in roles.memberships)
    )


async def console_command(
    message: Message, bot: Bot, session: AsyncSession, user: User, roles: Roles, settings: Settings
) -> None:
    locale = get_i18n().current_locale
    if message.chat.type != ChatType.PRIVATE:
        await message.answer(text(locale, "console-private-only"))
        return
    if not may_use_console(roles):
        await message.answer(text(locale, "console-not-allowed"))
        return
    minutes = settings.web_link_minutes
    token = await create_link(session, user, dt.timedelta(minutes=minutes))
    base = public_url(settings)
    keyboard = None
    if base.startswith("https://"):  # Telegram opens Mini Apps over https only
        app = WebAppInfo(url=f"{base}/")
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text=text(locale, "console-button"), web_app=app)]]
        )
        # The link below still works without it; the menu button is a convenience.
        with contextlib.suppress(TelegramAPIError):
            await bot.set_chat_menu_button(
                chat_id=message.chat.id,
                menu_button=MenuButtonWebApp(text=text(locale, "console-button"), web_app=app),
            )
    await message.answer(
        text(locale, "console-link").format(minutes=minutes, url=f"{base}/auth/link/{token}"),
        reply_markup=keyboard,
        # A link preview would fetch the URL; only its page's button spends the link, but no need to try.
        link_preview_options=LinkPreviewOptions(is_disabled=True),
        parse_mode=None,
    )


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(console_command, Command("console"), F.chat)
    return router
