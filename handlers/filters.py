"""Role filters: who may use a handler is decided from the database, never from the message."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Filter
from aiogram.types import TelegramObject

from models import Role
from services.users import Roles


class HasRole(Filter):
    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, event: TelegramObject, roles: Roles | None = None) -> bool:
        return roles is not None and roles.has(self.role)


def role_router(name: str, role: Role) -> Router:
    """A router whose messages and button presses reach only holders of `role` (admins', reviewers' and
    promoters' routers): the role check stands once, on the router, not on every handler."""
    router = Router(name=name)
    router.message.filter(HasRole(role))
    router.callback_query.filter(HasRole(role))
    return router
