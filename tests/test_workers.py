"""Several voice workers on one PostgreSQL database (issue #13): three real `fieldcheck voice worker`
processes share the queue with SKIP LOCKED and analyse no recording twice; one is killed with SIGKILL in
the middle of an analysis, and its task is taken over once its claim is stale."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.settings import PROJECT_ROOT, Settings
from models import AnalysisState, AnalysisTask, Audio, Voiceprint
from telegram_standin import StandIn
from tests.conftest import USE_POSTGRES
from tests.helpers import join_as_promoter, seed_contacts, seed_project, spawn_bot

pytestmark = pytest.mark.skipif(not USE_POSTGRES, reason="concurrent workers need PostgreSQL (SKIP LOCKED)")
TASKS = 9


async def _tasks(sessions: async_sessionmaker[AsyncSession]) -> list[AnalysisTask]:
    async with sessions() as session:
        return list((await session.scalars(select(AnalysisTask).order_by(AnalysisTask.id))).all())


async def test_three_workers_share_the_queue_and_a_killed_one_loses_nothing(
    app: Runtime,
    settings: Settings,
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    audio_dir: Path,
    tmp_path: Path,
) -> None:
    project = await seed_project(sessions)
    await join_as_promoter(tg, sessions, project)
    await seed_contacts(sessions, tg, project, 2001, TASKS, audio_dir / "enrol.ogg", settings.storage_root)
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "STORAGE_ROOT": str(settings.storage_root),
        "VOICE_BACKEND": "resemblyzer",
        "VOICE_STALE_SECONDS": "4",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    log = (tmp_path / "workers.log").open("ab")
    workers = [await spawn_bot("voice", "worker", env=env, log=log) for _ in range(3)]
    victim = workers[0]
    try:
        async with asyncio.timeout(120):
            while True:  # the victim has claimed a task and is analysing it
                running = [t for t in await _tasks(sessions) if t.state == AnalysisState.RUNNING]
                mine = [t for t in running if (t.claimed_by or "").endswith(f":{victim.pid}")]
                if mine:
                    victim.send_signal(signal.SIGKILL)
                    await victim.wait()
                    break
                await asyncio.sleep(0.02)
        async with sessions() as session:
            interrupted = await session.get(AnalysisTask, mine[0].id)
            assert interrupted is not None
            killed_mid_analysis = interrupted.state == AnalysisState.RUNNING
        async with asyncio.timeout(120):
            while any(t.state != AnalysisState.DONE for t in await _tasks(sessions)):  # noqa: ASYNC110 - other processes' rows
                await asyncio.sleep(0.2)
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.terminate()
                await worker.wait()
        log.close()
    tasks = await _tasks(sessions)
    assert len(tasks) == TASKS and all(t.state == AnalysisState.DONE for t in tasks)
    async with sessions() as session:
        per_audio = (
            await session.execute(select(Voiceprint.audio_id, func.count()).group_by(Voiceprint.audio_id))
        ).all()
        audio_ids = set((await session.scalars(select(Audio.id))).all())
    whole = {audio_id for audio_id, _count in per_audio}
    assert whole == audio_ids  # every recording analysed
    counts = {count for _audio, count in per_audio}
    assert len(counts) == 1, per_audio  # and none twice: each has as many voiceprints as the others
    survivors = {t.claimed_by for t in tasks} - {mine[0].claimed_by}
    assert len(survivors) >= 2  # both surviving workers took part
    if killed_mid_analysis:  # the kill landed while it analysed (almost always: about a second each)
        assert next(t for t in tasks if t.id == mine[0].id).attempts == 2
    assert [t.attempts for t in tasks if t.id != mine[0].id] == [1] * (TASKS - 1)
