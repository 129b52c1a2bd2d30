"""Alembic is the only schema source: up and down on SQLite and PostgreSQL, and the models agree with it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

import models
from bot.migrate import downgrade, upgrade
from services import projects
from tests.conftest import make_database, postgres_available

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres" and not postgres_available():
        pytest.skip("PostgreSQL is not reachable")
    yield from make_database(tmp_path, request.param)


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


async def _diff(url: str) -> list[object]:
    engine = create_async_engine(url)

    def compare(sync: Connection) -> list[object]:
        context = MigrationContext.configure(sync, opts={"compare_type": True})
        return list(compare_metadata(context, models.Base.metadata))

    async with engine.connect() as conn:
        diff = await conn.run_sync(compare)
    await engine.dispose()
    return diff


async def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    expected = set(models.Base.metadata.tables)
    await asyncio.to_thread(upgrade, fresh_url)
    assert await _tables(fresh_url) == expected
    assert await _diff(fresh_url) == []  # no model change without a migration
    await asyncio.to_thread(downgrade, fresh_url, "base")
    assert await _tables(fresh_url) == set()
    await asyncio.to_thread(upgrade, fresh_url)
    assert await _tables(fresh_url) == expected


async def test_a_draft_comment_moves_out_of_the_marks_and_back(tmp_path: Path) -> None:
    """0017 moves a "_comment" kept in an assignment's draft marks into draft_comment, and back on downgrade."""
    [url] = list(make_database(tmp_path, "sqlite"))
    await asyncio.to_thread(upgrade, url, "0016")
    engine = create_async_engine(url)  # no PRAGMA foreign_keys: the assignment needs no contact here
    columns = "id, contact_id, kind, status, attempt, assigned_at, draft_marks, created_at, updated_at"
    row = "'primary', 'open', 1, '2026-12-01', '{marks}', '2026-12-01', '2026-12-01'"
    async with engine.begin() as conn:
        for assignment_id, marks in ((1, '{"greeting": 1, "_comment": "weak"}'), (2, '{"greeting": 0}')):
            await conn.execute(
                text(
                    f"INSERT INTO assignment ({columns}) VALUES ({assignment_id}, 1, {row.format(marks=marks)})"
                )
            )
    await asyncio.to_thread(upgrade, url)
    read = text("SELECT id, draft_marks, draft_comment FROM assignment ORDER BY id")
    async with engine.connect() as conn:
        rows = [(r[0], json.loads(r[1]), r[2]) for r in await conn.execute(read)]
    assert rows == [(1, {"greeting": 1}, "weak"), (2, {"greeting": 0}, None)]
    await asyncio.to_thread(downgrade, url, "0016")
    async with engine.connect() as conn:
        marks = [
            json.loads(r[0])
            for r in await conn.execute(text("SELECT draft_marks FROM assignment ORDER BY id"))
        ]
    assert marks == [{"greeting": 1, "_comment": "weak"}, {"greeting": 0}]
    await engine.dispose()


async def test_projects_that_analyse_speech_keep_the_verdict_band(fresh_url: str) -> None:
    """0020: the verdict's default became one pass mark; a project with speech on keeps the band it ran
    under (0.75 / 0.35), a share it set itself stays, and a project with speech off takes the new default."""
    url = fresh_url
    await asyncio.to_thread(upgrade, url, "0019")  # the schema is the head's: 0020 moves data only
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    settings = {
        "speaking": {"enabled": True, "routing": True},
        "own_share": {"enabled": True, "verdict": {"approve_share": 0.9, "min_confidence": 0.8}},
        "silent": {"enabled": False, "products": ["Tea"]},
        "never": {},
    }
    async with sessions() as session, session.begin():
        for name, speech in settings.items():
            await projects.create_project(session, "Acme", name, speech_settings=speech)
    await asyncio.to_thread(upgrade, url)
    async with sessions() as session:
        after = {p.name: p.speech_settings for p in await projects.list_projects(session)}
    assert after == {
        "speaking": {
            "enabled": True,
            "routing": True,
            "verdict": {"approve_share": 0.75, "reject_share": 0.35},
        },
        "own_share": {
            "enabled": True,
            "verdict": {"approve_share": 0.9, "reject_share": 0.35, "min_confidence": 0.8},
        },
        "silent": {"enabled": False, "products": ["Tea"]},
        "never": {},
    }
    await engine.dispose()
    await asyncio.to_thread(downgrade, url, "0019")  # nothing to undo, and nothing fails
