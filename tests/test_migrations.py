"""Alembic is the only schema source: up and down on SQLite and PostgreSQL, and the models agree with it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

import models
from bot.migrate import downgrade, upgrade
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
