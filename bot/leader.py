"""One leader among the bot processes of a PostgreSQL deployment: it alone runs the scheduler's jobs and
the outbox sender, so jobs run once and the whole bot keeps one send budget (Telegram's limits are per
bot, not per process). Every process keeps handling updates.

Leadership is a session-level PostgreSQL advisory lock held on a connection of its own. A leader that dies
(SIGKILL, a lost machine) loses its connection, the server frees the lock, and the next process to ask
(every LEADER_POLL_SECONDS) takes over. A leader that finds its connection gone stops its duties at once:
it may not know whether someone else already holds the lock. SQLite deployments are one process: that
process simply leads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = structlog.get_logger(__name__)
LOCK_KEY = 0x66636B6C64  # "fckld": fixed, so every process of one database asks for the same lock

Duties = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # runs until the event is set


async def _try_lock(engine: AsyncEngine) -> AsyncConnection | None:
    connection = await engine.connect()
    try:
        got = await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})
        await connection.commit()  # the lock is the session's, not the transaction's
    except Exception:
        await connection.close()
        raise
    if got:
        return connection
    await connection.close()
    return None


async def _alive(connection: AsyncConnection) -> bool:
    try:
        await connection.scalar(text("SELECT 1"))
        await connection.commit()
    except Exception:  # the connection (and so the lock) is gone
        return False
    return True


async def lead_when_elected(engine: AsyncEngine, duties: Duties, stop: asyncio.Event, poll: float) -> None:
    """Ask for the lock every `poll` seconds; while held, run `duties`; give them up when the lock's
    connection is lost or `stop` is set."""
    while not stop.is_set():
        connection = None
        with contextlib.suppress(Exception):
            connection = await _try_lock(engine)
        if connection is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)
            continue
        log.info("leader_elected")
        relieved = asyncio.Event()
        working = asyncio.create_task(duties(relieved))
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll)
                if not stop.is_set() and not await _alive(connection):
                    log.warning("leader_lost", reason="lock connection gone")
                    break
        finally:
            relieved.set()
            await working
            with contextlib.suppress(Exception):
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                await connection.commit()
            with contextlib.suppress(Exception):
                await connection.close()
            log.info("leader_stepped_down")
