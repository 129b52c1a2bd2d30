"""Who gets told: managers of a project, and each person's language."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Membership, Project, Role, User


async def manager_chats(session: AsyncSession, project: Project) -> list[tuple[int, str | None]]:
    """(chat id, locale): the managers' group if the project has one, else each manager privately."""
    if project.managers_chat_id:
        return [(project.managers_chat_id, None)]
    rows = await session.execute(
        select(User.telegram_id, User.locale)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.project_id == project.id,
            Membership.role == Role.MANAGER,
            Membership.is_active.is_(True),
        )
        .order_by(User.id)
    )
    return [(int(chat), locale) for chat, locale in rows.all()]


async def set_shift(session: AsyncSession, user: User, on_shift: bool) -> int:
    memberships = list(
        await session.scalars(
            select(Membership).where(
                Membership.user_id == user.id,
                Membership.role == Role.REVIEWER,
                Membership.is_active.is_(True),
            )
        )
    )
    for membership in memberships:
        membership.on_shift = on_shift
    await session.flush()
    return len(memberships)
