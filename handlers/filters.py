"""Role filters: who may use a handler is decided from the database, never from the message."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import TelegramObject

from models import Role
from services.users import Roles


class HasRole(Filter):
    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, event: TelegramObject, roles: Roles | None = None) -> bool:
        return roles is not None and roles.has(self.role)
