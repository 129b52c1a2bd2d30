"""Several bot processes on one PostgreSQL database (issue #13): exactly one runs the scheduler and the
outbox at a time, and another takes over when the leader's connection dies or it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import Runtime, build_runtime
from bot.leader import LOCK_KEY
from infra.settings import Settings
from tests.conftest import USE_POSTGRES

pytestmark = pytest.mark.skipif(not USE_POSTGRES, reason="leader election is for PostgreSQL deployments")


async def _eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - leadership is state of another task, no event to await
            await asyncio.sleep(0.05)


def _running_jobs(runtime: Runtime) -> bool:
    """The scheduler is started and not paused (APScheduler 3: state 1 running, 2 paused)."""
    return runtime.scheduler.running and runtime.scheduler.state == 1


async def test_one_leader_runs_jobs_and_outbox_and_another_takes_over(
    settings: Settings, engine: AsyncEngine
) -> None:
    quick = settings.model_copy(update={"leader_poll_seconds": 0.2, "migrate_on_start": False})
    first, second = await build_runtime(quick), await build_runtime(quick)
    try:
        first.start_background()
        await _eventually(lambda: first.is_leader)
        second.start_background()
        await asyncio.sleep(1.0)  # five polls: the second must not lead beside the first
        assert first.is_leader and not second.is_leader
        assert _running_jobs(first) and not _running_jobs(second)

        # The leader's connection dies (a lost machine, or kill -9): the server frees the lock.
        async with engine.connect() as admin:
            killed = await admin.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND objid = :key AND granted"
                ),
                {"key": LOCK_KEY & 0xFFFFFFFF},
            )
        assert killed == 1
        await _eventually(
            lambda: first.is_leader != second.is_leader and (first.is_leader or second.is_leader)
        )
        await asyncio.sleep(0.6)
        assert [first.is_leader, second.is_leader].count(True) == 1  # never two
        leader, follower = (first, second) if first.is_leader else (second, first)
        assert _running_jobs(leader) and not _running_jobs(follower)

        await leader.close()  # a graceful stop hands over at once
        await _eventually(lambda: follower.is_leader, seconds=5)
        assert _running_jobs(follower)
    finally:
        for runtime in (first, second):
            await runtime.close()
