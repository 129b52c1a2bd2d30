"""aiogram FSM storage in the application database, so conversations survive restarts without Redis.

Inside an update the storage uses that update's own session (`UPDATE_SESSION`, set by DbSessionMiddleware):
a form step and the handler's other writes commit or roll back together, and on SQLite the storage never
waits on the write lock its own update holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, KeyBuilder, StateType, StorageKey
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import FsmState
from models.base import utcnow

UPDATE_SESSION: ContextVar[AsyncSession | None] = ContextVar("update_session", default=None)


class SqlStorage(BaseStorage):
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], key_builder: KeyBuilder | None = None
    ):
        self.session_factory = session_factory
        self.key_builder = key_builder or DefaultKeyBuilder(with_destiny=True)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        current = UPDATE_SESSION.get()
        if current is not None:
            yield current
            return
        async with self.session_factory() as session, session.begin():
            yield session

    async def _upsert(self, key: StorageKey, **values: Any) -> None:
        async with self._session() as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            row = {
                "key": self.key_builder.build(key),
                "state": None,
                "data": {},
                "updated_at": utcnow(),
                **values,
            }
            statement = insert(FsmState).values(**row)
            statement = statement.on_conflict_do_update(
                index_elements=["key"], set_={**values, "updated_at": row["updated_at"]}
            )
            await session.execute(statement)

    async def _get(self, key: StorageKey) -> FsmState | None:
        async with self._session() as session:
            return await session.get(FsmState, self.key_builder.build(key), populate_existing=True)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await self._upsert(key, state=state.state if isinstance(state, State) else state)

    async def get_state(self, key: StorageKey) -> str | None:
        row = await self._get(key)
        return row.state if row else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._upsert(key, data=dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        row = await self._get(key)
        return dict(row.data) if row else {}

    async def close(self) -> None:
        return None
