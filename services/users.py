"""People as the operation knows them: Telegram identity, locale, roles."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from infra.sql import insert_ignore
from models import Membership, Role, User
from models.base import utcnow


def active_in(project_id: int, role: Role) -> ColumnElement[bool]:
    """The memberships that count: in this project and role, and not deactivated (a removed member keeps
    the row, not the access)."""
    return and_(Membership.project_id == project_id, Membership.role == role, Membership.is_active.is_(True))


@dataclass(frozen=True)
class TelegramIdentity:
    telegram_id: int
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    locale: str | None = None  # from the Telegram client, when it is one the bot speaks


@dataclass
class Roles:
    """What the current user may do; built once per update by the user middleware."""

    is_global_admin: bool = False
    memberships: list[Membership] = field(default_factory=list)

    def projects(self, role: Role) -> list[int]:
        return [m.project_id for m in self.memberships if m.role == role and m.is_active]

    def has(self, role: Role, project_id: int | None = None) -> bool:
        if role == Role.ADMIN and self.is_global_admin:
            return True
        return any(
            m.role == role and m.is_active and (project_id is None or m.project_id == project_id)
            for m in self.memberships
        )


async def get_or_create_user(session: AsyncSession, who: TelegramIdentity) -> User:
    user = await session.scalar(select(User).where(User.telegram_id == who.telegram_id))
    if user is None:
        # A newcomer's first messages arrive together: the insert must tolerate a concurrent twin.
        now = utcnow()
        await insert_ignore(
            session,
            User,
            {
                "telegram_id": who.telegram_id,
                "first_name": who.first_name,
                "last_name": who.last_name,
                "username": who.username,
                "locale": who.locale,
                "created_at": now,
                "updated_at": now,
            },
            ["telegram_id"],
        )
        user = (await session.scalars(select(User).where(User.telegram_id == who.telegram_id))).one()
    else:
        _keep_names_current(user, who)
    return user


def _keep_names_current(user: User, who: TelegramIdentity) -> None:
    if (user.first_name, user.last_name, user.username) != (who.first_name, who.last_name, who.username):
        user.first_name, user.last_name, user.username = who.first_name, who.last_name, who.username


async def user_and_roles(
    session: AsyncSession, who: TelegramIdentity, admin_ids: list[int]
) -> tuple[User, Roles]:
    """`get_or_create_user` and `load_roles` in one query for someone already known (every update reads
    both: one statement fewer per update, each a few hundred microseconds of SQLAlchemy)."""
    known = (
        (
            await session.execute(
                select(User)
                .where(User.telegram_id == who.telegram_id)
                .options(joinedload(User.memberships).joinedload(Membership.project))
            )
        )
        .unique()
        .scalar_one_or_none()
    )
    if known is None:
        user = await get_or_create_user(session, who)
        return user, await load_roles(session, user, admin_ids)
    _keep_names_current(known, who)
    active = sorted((m for m in known.memberships if m.is_active), key=lambda m: m.id)
    return known, Roles(is_global_admin=known.telegram_id in admin_ids, memberships=active)


async def load_roles(session: AsyncSession, user: User, admin_ids: list[int]) -> Roles:
    # Every update reads this; the project is joined in rather than fetched by a second query (on SQLite
    # each statement is a round trip made while the update holds the write lock: docs/benchmarks.md).
    memberships = await session.scalars(
        select(Membership)
        .where(Membership.user_id == user.id, Membership.is_active.is_(True))
        .options(joinedload(Membership.project))
        .order_by(Membership.id)
    )
    return Roles(is_global_admin=user.telegram_id in admin_ids, memberships=list(memberships))


async def set_locale(session: AsyncSession, user: User, locale: str) -> None:
    user.locale = locale
    await session.flush()
