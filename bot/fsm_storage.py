"""aiogram FSM storage in the application database, so conversations survive restarts without Redis.

Inside an update the storage uses that update's own session (services.unit_of_work.current_unit):
a form step and the handler's other writes commit or roll back together, and on SQLite the storage never
waits on the write lock its own update holds.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, KeyBuilder, StateType, StorageKey
from sqlalchemy import Insert, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.sql import dialect_of, table_of
from models import FsmState
from models.base import utcnow
from services.unit_of_work import current_unit

CACHE = "fsm_rows"  # the unit's memo of the conversation rows its current transaction has read


_TABLE = table_of(FsmState)
# Core statements on the table, built once (infra/sql.py says why the hot paths avoid the ORM).
_READ = select(_TABLE.c.state, _TABLE.c.data).where(_TABLE.c.key == bindparam("key"))


@functools.cache
def _upsert_statement(dialect: str, columns: tuple[str, ...]) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_TABLE)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["key"], set_={name: excluded[name] for name in (*columns, "updated_at")}
    )


class SqlStorage(BaseStorage):
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], key_builder: KeyBuilder | None = None
    ):
        self.session_factory = session_factory
        self.key_builder = key_builder or DefaultKeyBuilder(with_destiny=True)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        unit = current_unit()
        if unit is not None:
            yield unit.session
            return
        async with self.session_factory() as session, session.begin():
            yield session

    async def _upsert(self, key: StorageKey, **values: Any) -> None:
        async with self._session() as session:
            row = {
                "key": self.key_builder.build(key),
                "state": None,
                "data": {},
                "updated_at": utcnow(),
                **values,
            }
            await session.execute(_upsert_statement(dialect_of(session), tuple(sorted(values))), row)

    async def _get(self, key: StorageKey) -> tuple[str | None, dict[str, Any]]:
        """(state, data). Inside an update the row is read once and then kept in step with this storage's
        own writes (aiogram reads the state, then handlers read the data: one query, not two or three)."""
        built = self.key_builder.build(key)
        unit = current_unit()
        cache = unit.transaction_memo(CACHE) if unit is not None else None
        if cache is not None and built in cache:
            state, data = cache[built]
            return state, dict(data)
        async with self._session() as session:
            row = (await session.execute(_READ, {"key": built})).first()
            found = (row.state, dict(row.data)) if row else (None, {})
        if cache is not None:
            cache[built] = found
        return found[0], dict(found[1])

    def _remember(self, key: StorageKey, **values: Any) -> None:
        unit = current_unit()
        cache = unit.transaction_memo(CACHE) if unit is not None else None
        built = self.key_builder.build(key)
        if cache is not None and built in cache:
            state, data = cache[built]
            cache[built] = (values.get("state", state), dict(values.get("data", data)))

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        await self._upsert(key, state=value)
        self._remember(key, state=value)

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._get(key))[0]

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._upsert(key, data=dict(data))
        self._remember(key, data=dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return (await self._get(key))[1]

    async def close(self) -> None:
        return None
