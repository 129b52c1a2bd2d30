"""Each place the bot leans on a library's private API, pinned (issue #28 item 6): what it depends on, that it
is in effect, and that its setting turns it off with the bot still working. An upgrade that moves one of
these fails here by name, not as a slow bot or a strange error under load."""

from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
from aiogram.dispatcher.event.handler import CallableObject
from aiogram.fsm.middleware import FSMContextMiddleware
from sqlalchemy import text

from bot.factory import create_dispatcher, run_sync_callbacks_inline
from infra.db import InlineWhileLocked, WriteGate, create_engine
from infra.settings import Settings
from services.unit_of_work import create_database
from telegram_ui.i18n import create_i18n


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **overrides)  # type: ignore[call-arg]


def test_aiosqlite_still_has_what_inline_while_locked_replaces() -> None:
    """InlineWhileLocked replaces `aiosqlite.Connection._execute` (the call queue to its thread) and reads
    `_connection` (the sqlite3 connection) to run a call in place."""
    assert inspect.iscoroutinefunction(aiosqlite.Connection._execute)
    assert list(inspect.signature(aiosqlite.Connection._execute).parameters)[:2] == ["self", "fn"]
    source = inspect.getsource(aiosqlite.Connection)
    assert "self._connection" in source


async def test_inline_while_locked_is_in_effect_and_its_setting_turns_it_off(tmp_path: Path) -> None:
    for inline in (True, False):
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / f'{inline}.db'}", inline_while_locked=inline)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            raw = await conn.get_raw_connection()
            installed = raw.info.get(WriteGate.INLINE)
            driver = raw.driver_connection
            assert isinstance(driver._conn, sqlite3.Connection)  # type: ignore[union-attr]
        if inline:
            assert isinstance(installed, InlineWhileLocked)
            assert driver._execute is installed  # type: ignore[union-attr]
        else:
            assert installed is None
            assert not isinstance(driver._execute, InlineWhileLocked)  # type: ignore[union-attr]
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT sum(n) FROM t"))).scalar() == 1
        await engine.dispose()
    assert Settings(_env_file=None).sqlite_inline_while_locked  # type: ignore[call-arg]


def test_aiogram_still_has_what_the_dispatcher_tuning_uses(tmp_path: Path) -> None:
    """run_sync_callbacks_inline flips `CallableObject.awaitable` and wraps `.callback`, walking
    `observer._handler.filters`; create_dispatcher inserts the session middleware into
    `outer_middleware._middlewares` before aiogram's FSMContextMiddleware."""
    fields = {name for name in CallableObject.__dataclass_fields__}
    assert {"callback", "awaitable"} <= fields
    settings = _settings(tmp_path)
    dp = create_dispatcher(settings, create_database(create_engine(settings.database_url)), create_i18n())
    assert hasattr(dp.update, "_handler") and hasattr(dp.update._handler, "filters")
    chain = dp.update.outer_middleware._middlewares
    assert isinstance(chain, list)
    fsm_at = next(i for i, m in enumerate(chain) if isinstance(m, FSMContextMiddleware))
    assert type(chain[fsm_at - 1]).__name__ == "DbSessionMiddleware"  # the update's session opens first


def test_the_setting_leaves_aiogram_running_filters_its_own_way(tmp_path: Path) -> None:
    settings = _settings(tmp_path, aiogram_sync_inline=False)
    dp = create_dispatcher(settings, create_database(create_engine(settings.database_url)), create_i18n())
    left = run_sync_callbacks_inline(dp)  # what the setting left to aiogram: every synchronous one
    assert left > 20
    assert run_sync_callbacks_inline(dp) == 0
