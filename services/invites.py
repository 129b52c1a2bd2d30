"""Invites: the only way a Telegram user gets a role in a project (deep link `/start inv_<code>`)."""

from __future__ import annotations

import datetime as dt
import secrets
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Invite, Membership, Project, Role, User
from models.base import utcnow
from services.problems import ProblemError

INVITE_PREFIX = "inv_"
DEFAULT_TTL = dt.timedelta(days=7)


class InviteProblem(StrEnum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED_UP = "used_up"
    REVOKED = "revoked"
    PROJECT_CLOSED = "project_closed"


class InviteError(ProblemError[InviteProblem]):
    """An invite that cannot be used (or created)."""


async def create_invite(
    session: AsyncSession,
    project_id: int,
    role: Role,
    *,
    max_uses: int = 1,
    ttl: dt.timedelta | None = DEFAULT_TTL,
    created_by: User | None = None,
    now: dt.datetime | None = None,
) -> Invite:
    if max_uses < 1:
        raise ValueError("an invite must allow at least one use")
    if await session.get(Project, project_id) is None:
        raise ValueError(f"no project {project_id}")
    now = now or utcnow()
    invite = Invite(
        code=secrets.token_urlsafe(12).replace("-", "x").replace("_", "y"),
        project_id=project_id,
        role=role,
        max_uses=max_uses,
        expires_at=now + ttl if ttl else None,
        created_by_id=created_by.id if created_by else None,
    )
    session.add(invite)
    await session.flush()
    return invite


def deep_link(bot_username: str, invite: Invite) -> str:
    return f"https://t.me/{bot_username}?start={INVITE_PREFIX}{invite.code}"


async def accept_invite(
    session: AsyncSession, user: User, code: str, *, now: dt.datetime | None = None
) -> tuple[Membership, bool]:
    """Bind the user to the invite's project and role. Returns (membership, created)."""
    now = now or utcnow()
    code = code.removeprefix(INVITE_PREFIX).strip()
    invite = await session.scalar(select(Invite).where(Invite.code == code)) if code else None
    if invite is None:
        raise InviteError(InviteProblem.UNKNOWN)
    project = await session.get(Project, invite.project_id)
    if project is None or not project.is_active:
        raise InviteError(InviteProblem.PROJECT_CLOSED)
    existing = await session.scalar(
        select(Membership).where(
            Membership.user_id == user.id,
            Membership.project_id == invite.project_id,
            Membership.role == invite.role,
        )
    )
    if existing is not None and existing.is_active:
        return existing, False  # opening the same link again costs no use
    if invite.revoked:
        raise InviteError(InviteProblem.REVOKED)
    if invite.expires_at is not None and invite.expires_at <= now:
        raise InviteError(InviteProblem.EXPIRED)
    # Conditional increment: two people racing for the last use cannot both win.
    taken = await session.execute(
        update(Invite)
        .where(Invite.id == invite.id, Invite.uses < Invite.max_uses)
        .values(uses=Invite.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise InviteError(InviteProblem.USED_UP)
    if existing is not None:
        existing.is_active, existing.invite_id = True, invite.id
        membership = existing
    else:
        membership = Membership(
            user_id=user.id, project_id=invite.project_id, role=invite.role, invite_id=invite.id
        )
        session.add(membership)
    await session.flush()
    await session.refresh(membership, ["project"])
    return membership, True
