"""Groups (the reviewers' and managers' chats) see only what is meant for a group: personal commands
asked there (a promoter's form and figures, a reviewer's cards, exports, admin menus) are answered with a
pointer to the private chat instead of posting personal data to everyone in the group."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

PERSONAL_COMMANDS = (
    "new",
    "my",
    "enrol",
    "cancel",
    "cards",
    "billing",
    "report",
    "alerts",
    "export",
    "invite",
    "newproject",
    "projects",
    "lang",
)


async def personal_in_group(message: Message) -> None:
    await message.answer(_("group-use-private-chat"))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.filter(F.chat.type.in_({"group", "supergroup"}))
    router.message.register(personal_in_group, Command(*PERSONAL_COMMANDS))
    return router
