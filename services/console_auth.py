"""Sign-in records of the web console: one-time links from `/console`, and Mini App initData already used.

Both are spent by one conditional statement (an UPDATE ... WHERE used_at IS NULL, an INSERT that a second
copy cannot repeat), so two requests racing with the same link or the same initData cannot both win,
whichever console process each reaches.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.sql import insert_ignore
from models import ConsoleInitSeen, ConsoleLink, User
from models.base import utcnow

LINK_BYTES = 24  # 192 random bits: guessing one is hopeless, and the URL stays short


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def create_link(
    session: AsyncSession, user: User, ttl: dt.timedelta, *, now: dt.datetime | None = None
) -> str:
    """A fresh token for `user`; only its hash is stored. Returns the token for the URL."""
    now = now or utcnow()
    token = secrets.token_urlsafe(LINK_BYTES)
    session.add(ConsoleLink(token_hash=digest(token), user_id=user.id, created_at=now, expires_at=now + ttl))
    await session.flush()
    return token


async def spend_link(session: AsyncSession, token: str, *, now: dt.datetime | None = None) -> int | None:
    """The Telegram id the link signs in, spending it; None for an unknown, used or expired link."""
    now = now or utcnow()
    hashed = digest(token)
    spent = await session.execute(
        update(ConsoleLink)
        .where(ConsoleLink.token_hash == hashed, ConsoleLink.used_at.is_(None), ConsoleLink.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if not spent.rowcount:  # type: ignore[attr-defined]
        return None
    telegram_id: int | None = await session.scalar(
        select(User.telegram_id)
        .join(ConsoleLink, ConsoleLink.user_id == User.id)
        .where(ConsoleLink.token_hash == hashed)
    )
    return telegram_id


async def link_state(session: AsyncSession, token: str, *, now: dt.datetime | None = None) -> str:
    """ "valid", "used", "expired" or "unknown": what the confirmation page says before anything is spent."""
    now = now or utcnow()
    link = await session.get(ConsoleLink, digest(token))
    if link is None:
        return "unknown"
    if link.used_at is not None:
        return "used"
    return "valid" if link.expires_at > now else "expired"


async def first_use_of_init_data(
    session: AsyncSession, init_hash: str, expires_at: dt.datetime, *, now: dt.datetime | None = None
) -> bool:
    """True the first time this initData (by its Telegram hash) signs in; False for a replay. Entries past
    their expiry go first: by then the initData is stale and refused for that reason anyway."""
    now = now or utcnow()
    await session.execute(delete(ConsoleInitSeen).where(ConsoleInitSeen.expires_at <= now))
    return await insert_ignore(
        session, ConsoleInitSeen, {"init_hash": init_hash, "expires_at": expires_at}, ["init_hash"]
    )


async def purge_links(session: AsyncSession, *, now: dt.datetime | None = None) -> int:
    """Links past their expiry are of no use to anyone: removed at sign-in time, a few at a time."""
    now = now or utcnow()
    result = await session.execute(delete(ConsoleLink).where(ConsoleLink.expires_at <= now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
