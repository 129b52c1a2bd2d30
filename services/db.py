"""Engine and session factory: one session per update or job run, never a module-level session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry


def create_engine(database_url: str, *, echo: bool = False) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": echo}
    if database_url.startswith("sqlite"):
        # One writer at a time; wait for it instead of failing with "database is locked".
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    engine = create_async_engine(database_url, **kwargs)
    if database_url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # Let SQLAlchemy, not the driver, open transactions (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Connection) -> None:
    """Take the write lock when a transaction starts: a read-then-write can never fail on a stale snapshot.
    A connection set to AUTOCOMMIT (long exports) reads outside any transaction and takes no lock."""
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that mark billing days stale as contacts change (services/billing.py)."""
    from services.billing import track_changes

    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=track_changes())


@asynccontextmanager
async def reader(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for a long read that holds up no writer. SQLite: outside any transaction (a WAL reader
    never blocks, while every transaction here takes the write lock); PostgreSQL: a plain read
    transaction, which its server-side cursor needs."""
    async with engine.connect() as opened:
        if engine.dialect.name == "sqlite":
            yield await opened.execution_options(isolation_level="AUTOCOMMIT")
        else:
            yield opened


@asynccontextmanager
async def read_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """An ORM session over `reader`: digests and reports read thousands of rows for seconds, and on SQLite
    the update's own session would hold the write lock (BEGIN IMMEDIATE) all that time. Read only."""
    async with reader(engine) as connection, AsyncSession(bind=connection, expire_on_commit=False) as session:
        yield session
