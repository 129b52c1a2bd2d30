"""Small helpers shared by tests: seeding through the services, reading the database."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Audio, Contact, Invite, Membership, Project, Role, User
from services import invites, projects


async def seed_project(sessions: async_sessionmaker[AsyncSession], name: str = "Tasting") -> Project:
    async with sessions() as session, session.begin():
        return await projects.create_project(session, "Demo Foods", name)


async def seed_invite(
    sessions: async_sessionmaker[AsyncSession],
    project_id: int,
    role: Role = Role.PROMOTER,
    *,
    max_uses: int = 1,
    ttl: dt.timedelta | None = dt.timedelta(days=7),
    now: dt.datetime | None = None,
) -> Invite:
    async with sessions() as session, session.begin():
        return await invites.create_invite(session, project_id, role, max_uses=max_uses, ttl=ttl, now=now)


async def memberships_of(sessions: async_sessionmaker[AsyncSession], telegram_id: int) -> list[Membership]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Membership)
            .join(User, Membership.user_id == User.id)
            .where(User.telegram_id == telegram_id)
        )
        return list(rows)


async def invite_uses(sessions: async_sessionmaker[AsyncSession], invite_id: int) -> int:
    async with sessions() as session:
        invite = await session.get(Invite, invite_id)
        assert invite is not None
        return invite.uses


async def add_contact(session: AsyncSession, project_id: int, promoter_id: int) -> tuple[Contact, Audio]:
    """A bare contact with its (unstored) audio row, for tests that seed analysis results directly."""
    contact = Contact(project_id=project_id, promoter_id=promoter_id, form_answers={})
    session.add(contact)
    await session.flush()
    audio = Audio(
        contact_id=contact.id, owner_id=promoter_id, storage_key=f"k{contact.id}", sha256=f"{contact.id:064d}"
    )
    session.add(audio)
    await session.flush()
    return contact, audio
