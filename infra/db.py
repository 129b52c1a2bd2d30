"""The database: its engine and SQLite's write gate, long readers, and `Database`, which holds them for a
process (one session per update or job run, never a module-level session)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
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
from sqlalchemy.util import await_only
from sqlalchemy.util.concurrency import in_greenlet

BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE = 20
POSTGRES_POOL_SIZE = 20
OFF_LOOP = "fieldcheck_off_loop"  # execution option: this transaction's SQL stays on aiosqlite's thread
# Transactions begun while this is set may be lost to a power cut (never to a crash of the process): what
# they did is replayed from a record that was durable before (see `replayable`).
_REPLAYABLE: ContextVar[list[bool] | None] = ContextVar("replayable", default=None)
DURABLE, REPLAYED = "FULL", "NORMAL"  # SQLite's synchronous levels for the two kinds of transaction


@contextmanager
def replayable() -> Iterator[None]:
    """Transactions begun inside commit without waiting for the disk (SQLite: synchronous=NORMAL, no fsync
    of the WAL at the commit). A process crash loses nothing either way; a power cut or a kernel crash can
    roll back the last of them, never one in the middle (the WAL is replayed in order up to its last
    synced frame, and every durable commit syncs all frames before its own).

    Why it is safe for an update: it was stored in the inbox durably before Telegram was told it arrived,
    and its handling removes it from the inbox in the same transaction as its effects. If that transaction
    is rolled back by a power cut, so is the removal, and the update is handled again at the next start
    (the person may hear the same answer twice; nothing is lost). Once the update has committed and said
    something (services/unit_of_work.py), `durable_from_here` ends it: later writes have no replay.
    Why: the fsync was half of each commit's time, and SQLite's write lock is held meanwhile."""
    token = _REPLAYABLE.set([True])  # a box, not a flag: tasks the update starts share it
    try:
        yield
    finally:
        _REPLAYABLE.reset(token)


def durable_from_here() -> None:
    """Inside `replayable`: the transactions begun from now on commit durably again."""
    box = _REPLAYABLE.get()
    if box is not None:
        box[0] = False


def _replayable_now() -> bool:
    box = _REPLAYABLE.get()
    return box is not None and box[0]


def create_engine(database_url: str, *, echo: bool = False, inline_while_locked: bool = True) -> AsyncEngine:
    """`inline_while_locked`: SQLITE_INLINE_WHILE_LOCKED (InlineWhileLocked, which patches aiosqlite's
    private `_execute`; tests/test_private_api.py pins what it depends on)."""
    kwargs: dict[str, Any] = {"echo": echo}
    if database_url.startswith("sqlite"):
        # One writer at a time; wait for it instead of failing with "database is locked".
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
        # Kept open, not opened per burst: SQLAlchemy closes an overflow connection when it comes back, and
        # a new one costs a thread (aiosqlite), its pragmas and functions, and SQLite reading the schema
        # again (a burst of 20 updates opened and closed 15 connections every time, 4 per contact).
        kwargs.update(pool_size=SQLITE_POOL_SIZE, max_overflow=10)
    else:
        # The same 20 connections at most as 10 kept plus 10 overflow, all kept open: an overflow connection
        # is closed when it comes back, and a new one is a new server process (a burst of 20 updates opened
        # 173 connections for 40 contacts in bench/update_cost.py).
        kwargs.update(pool_size=POSTGRES_POOL_SIZE, max_overflow=0, pool_pre_ping=True)
    engine = create_async_engine(database_url, **kwargs)
    if database_url.startswith("sqlite"):
        gate = WriteGate()
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if inline_while_locked:
            event.listen(engine.sync_engine, "connect", _run_inline_while_locked)
        event.listen(engine.sync_engine, "begin", gate.begin)
        event.listen(engine.sync_engine, "commit", gate.end)
        event.listen(engine.sync_engine, "rollback", gate.end)
        # A connection can also leave its transaction without either event (returned to the pool and reset,
        # invalidated after an error, closed): the lock goes with it, or every later writer would wait.
        pool = engine.sync_engine.pool
        event.listen(pool, "reset", gate.on_reset)
        for name in ("checkin", "close"):
            event.listen(pool, name, gate.on_checkin)
        for name in ("invalidate", "soft_invalidate"):
            event.listen(pool, name, gate.on_invalidate)
    return engine


def use_wal(dbapi_connection: DBAPIConnection, timeout: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """PRAGMA journal_mode=WAL, tried again while another connection holds the file.

    Why: a new database (Alembic writes it in SQLite's default rollback journal) becomes WAL at the first
    connection that asks. Two processes starting together both ask; each reads the header, then wants the
    write lock to change it, and SQLite answers one of them "database is locked" at once, without its busy
    handler (two readers both upgrading would wait on each other for ever). Measured: 3 in 300 such races
    (tests/test_sqlite_writes.py); it ended a webhook process's start in CI. Once the file is WAL the pragma
    is a no-op and never waits."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    cursor = dbapi_connection.cursor()
    try:
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                mode = cursor.fetchone()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)  # a connect event: aiosqlite's own thread, not the event loop
            delay = min(delay * 2, 0.2)
    finally:
        cursor.close()
    if mode is not None and str(mode[0]).lower() not in ("wal", "memory"):
        raise sqlite3.OperationalError(f"SQLite refused WAL mode (journal_mode={mode[0]})")


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    use_wal(dbapi_connection)
    cursor = dbapi_connection.cursor()
    # The default, said aloud: WriteGate relaxes it per transaction (`replayable`).
    cursor.execute(f"PRAGMA synchronous={DURABLE}")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()
    _record.info[WriteGate.SYNCHRONOUS] = DURABLE
    # Let SQLAlchemy, not the driver, open transactions (see WriteGate).
    dbapi_connection.isolation_level = None


class InlineWhileLocked:
    """Stands in for an aiosqlite connection's call queue: while the connection holds SQLite's write lock,
    its calls run right here on the event loop's thread; otherwise they go to aiosqlite's thread as usual.

    Why: a call through the thread resumes only when the event loop gets round to it, and under load the
    loop is running a hundred other updates' steps (the load bench saw 0.3-16 ms per statement). Every
    other update waits for the lock meanwhile, so each round trip cost the whole bot, not only this update.
    Inside a write transaction nothing can block on a lock (this connection holds it, and WAL readers
    never block the writer), so the calls are quick; a long write (ANALYZE, a purge) sets OFF_LOOP to keep
    them on the thread. Outside the lock (BEGIN waiting for another process, long exports) the thread is
    still used, so a wait never blocks the loop."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.queued: Callable[..., Awaitable[Any]] = driver._execute
        self.holding = False

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        raw: sqlite3.Connection | None = self.driver._connection
        if not self.holding or raw is None:
            return await self.queued(fn, *args, **kwargs)
        if fn in (raw.commit, raw.rollback):  # the lock goes with it
            self.holding = False
        return fn(*args, **kwargs)

    def run(self, sql: str) -> bool:
        """A statement that takes no lock, run here (False when the connection is not open)."""
        raw: sqlite3.Connection | None = self.driver._connection
        if raw is None:
            return False
        raw.execute(sql)
        return True

    def try_begin(self) -> bool:
        """BEGIN IMMEDIATE here, without waiting: False when another process holds the lock (the caller
        then waits for it on aiosqlite's thread, under the busy timeout)."""
        raw: sqlite3.Connection | None = self.driver._connection
        if raw is None:
            return False
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if raw.in_transaction or ("locked" not in str(exc) and "busy" not in str(exc)):
                raise
            return False
        finally:
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self.holding = True
        return True


def _run_inline_while_locked(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    driver = getattr(dbapi_connection, "_connection", None)  # aiosqlite.Connection under SQLAlchemy's adapter
    if driver is not None and hasattr(driver, "_execute"):
        inline = InlineWhileLocked(driver)
        driver._execute = inline
        record.info[WriteGate.INLINE] = inline


class WriteGate:
    """SQLite: every transaction takes the write lock when it starts (BEGIN IMMEDIATE), so a read-then-write
    can never fail on a stale snapshot. In-process writers queue for it on an asyncio lock first.

    Why the queue: SQLite's own busy handler makes a waiting connection sleep and retry (up to 100 ms a
    try), so with many updates waiting the lock sat idle between a commit and the next sleeper waking;
    under load, tiny updates took a second. The asyncio lock hands over at once, in arrival order. Other
    processes (the CLI, a voice worker) still meet SQLite's busy timeout. A connection set to AUTOCOMMIT
    (long exports) reads outside any transaction and takes neither lock."""

    HOLDER = "write_gate"
    INLINE = "inline_while_locked"
    SYNCHRONOUS = "synchronous"  # this connection's PRAGMA synchronous now

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def _lock(self) -> asyncio.Lock | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (Alembic's offline tools): SQLite's busy timeout only
            return None
        if loop not in self._locks:
            self._locks = {k: v for k, v in self._locks.items() if not k.is_closed()}
            self._locks[loop] = asyncio.Lock()
        return self._locks[loop]

    def begin(self, connection: Connection) -> None:
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        lock = self._lock()
        if lock is not None and in_greenlet():  # else a synchronous caller: SQLite's busy timeout only
            try:
                await_only(self._acquire(lock))
            except TimeoutError as exc:  # as SQLite would say after its own busy timeout
                raise sqlite3.OperationalError("database is locked (in-process writer queue)") from exc
            connection.info[self.HOLDER] = lock
        inline: InlineWhileLocked | None = connection.info.get(self.INLINE)
        if connection.get_execution_options().get(OFF_LOOP) or not in_greenlet():
            inline = None
        try:
            level = REPLAYED if _replayable_now() else DURABLE
            if connection.info.get(self.SYNCHRONOUS) != level:  # outside any transaction: takes no lock
                if inline is None or not inline.run(f"PRAGMA synchronous={level}"):
                    connection.exec_driver_sql(f"PRAGMA synchronous={level}")
                connection.info[self.SYNCHRONOUS] = level
            if inline is None or not inline.try_begin():
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                if inline is not None:
                    inline.holding = True
        except BaseException:
            self.end(connection)
            raise

    async def _acquire(self, lock: asyncio.Lock) -> None:
        """asyncio.timeout, not wait_for: wait_for runs the acquire in a task of its own, one more turn of
        the busy event loop for every transaction, even when the lock is free."""
        async with asyncio.timeout(self.timeout):
            await lock.acquire()

    def end(self, connection: Connection) -> None:
        """At the commit or rollback event, just before the call itself: an inline call (the usual case)
        completes before any waiter can run, so the next BEGIN finds the lock free."""
        self._release(connection.info)

    def on_reset(self, dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
        self.on_checkin(dbapi_connection, connection_record)

    def on_invalidate(self, dbapi_connection: Any, connection_record: Any, exception: Any) -> None:
        self.on_checkin(dbapi_connection, connection_record)

    def on_checkin(self, _dbapi_connection: Any, connection_record: Any) -> None:
        info = getattr(connection_record, "info", None)
        if isinstance(info, dict):
            self._release(info)
            inline = info.get(self.INLINE)
            if inline is not None:  # left without a commit or rollback call: the lock went with it
                inline.holding = False

    def _release(self, info: dict[Any, Any]) -> None:
        lock = info.pop(self.HOLDER, None)
        if lock is not None and lock.locked():
            lock.release()


async def off_loop(session: AsyncSession) -> None:
    """Call first in a long write transaction (a purge of old rows, ANALYZE, a billing roll-up): on SQLite
    its SQL then runs on aiosqlite's thread, not on the event loop (InlineWhileLocked)."""
    await session.connection(execution_options={OFF_LOOP: True})


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


class Database:
    """One process's database, made once where the process starts (bot/app.build_runtime, the CLI's
    bot/cli/common.run_database) and closed with it; handlers get it from aiogram's workflow data (`db`)
    and jobs as an argument, so nobody digs an engine out of a session.

    - `writer`: the engine every write transaction goes through (on SQLite, with its write gate);
    - `sessions`: the session factory over it, of the project's own session class (built by
      services.unit_of_work.create_database: infra knows no domain listener);
    - `reader()` / `read_session()`: long reads that hold up no writer (`reader`, `read_session` above);
    - `dialect`: "sqlite" or "postgresql"."""

    def __init__(self, writer: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.writer = writer
        self.sessions = sessions
        self.dialect: str = writer.dialect.name

    def reader(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return reader(self.writer)

    def read_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return read_session(self.writer)

    async def close(self) -> None:
        await self.writer.dispose()
