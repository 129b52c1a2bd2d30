"""SQLite's write path (infra/db.py): statements under the write lock run on the event loop's thread,
a wait for another process's lock never blocks the loop, long writes stay on aiosqlite's thread, and
aiogram runs no filter in a worker thread (bot/factory.py). SQLite only, whatever FIELDCHECK_TEST_DB says:
PostgreSQL has no such path. Then the API result models that aiogram would otherwise rebuild, and which
transactions commit without the WAL's fsync (through the real bot, on the test database when it is SQLite)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import Runtime
from bot.factory import create_dispatcher, run_sync_callbacks_inline
from infra.db import create_engine, off_loop, use_wal
from services.unit_of_work import create_database, create_session_factory
from telegram_standin import StandIn
from tests.helpers import fill_default_form, join_as_promoter, seed_project


async def _engine(tmp_path: Path) -> AsyncEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writes.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE tally (n INTEGER NOT NULL)"))
    return engine


async def _trace(conn: AsyncConnection, seen: list[tuple[int, str]] | None = None) -> list[tuple[int, str]]:
    """(thread id, SQL) of every statement SQLite itself runs on this connection, in the thread that runs it."""
    seen = [] if seen is None else seen
    raw = (await conn.get_raw_connection()).driver_connection._conn  # type: ignore[union-attr]
    raw.set_trace_callback(lambda sql: seen.append((threading.get_ident(), sql)))
    return seen


async def test_statements_under_the_write_lock_run_on_the_event_loop_thread(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    loop_thread = threading.get_ident()
    async with engine.connect() as conn:
        seen = await _trace(conn)
        async with conn.begin():
            await conn.execute(text("INSERT INTO tally (n) VALUES (1)"))
            assert (await conn.execute(text("SELECT count(*) FROM tally"))).scalar_one() == 1
        statements = [sql for _thread, sql in seen]
        assert "BEGIN IMMEDIATE" in statements
        assert statements[-1] == "COMMIT"
        written = seen[statements.index("BEGIN IMMEDIATE") :]
        assert {thread for thread, _sql in written} == {loop_thread}, written
        # Outside a transaction (an export's reader) the driver's own thread runs it, as before.
        reader = await conn.execution_options(isolation_level="AUTOCOMMIT")
        seen.clear()
        await reader.execute(text("SELECT count(*) FROM tally"))
        assert seen and all(thread != loop_thread for thread, _sql in seen), seen
    await engine.dispose()


async def test_a_long_write_marked_off_loop_stays_on_the_driver_thread(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    loop_thread = threading.get_ident()
    async with create_session_factory(engine)() as session, session.begin():
        await off_loop(session)
        seen = await _trace(await session.connection())
        await session.execute(text("INSERT INTO tally (n) VALUES (1)"))
    assert seen and all(thread != loop_thread for thread, _sql in seen), seen
    assert seen[-1][1] == "COMMIT"
    await engine.dispose()


async def test_waiting_for_another_process_lock_never_blocks_the_event_loop(tmp_path: Path) -> None:
    """Another process (the CLI, a voice worker) holds the write lock: the update waits under SQLite's busy
    timeout on the driver's thread while the loop runs on, then writes, inline, once the lock is free."""
    engine = await _engine(tmp_path)
    other = sqlite3.connect(tmp_path / "writes.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO tally (n) VALUES (100)")
    loop_thread = threading.get_ident()
    seen: list[tuple[int, str]] = []

    async def write() -> None:
        async with engine.connect() as conn:
            await _trace(conn, seen)
            async with conn.begin():
                await conn.execute(text("INSERT INTO tally (n) VALUES (1)"))

    writer = asyncio.create_task(write())
    started = time.monotonic()
    for _ in range(30):  # 0.3 s of 10 ms sleeps; a loop blocked in the wait would be stuck for 30 s
        await asyncio.sleep(0.01)
    assert time.monotonic() - started < 3
    assert not writer.done()
    other.execute("COMMIT")
    await asyncio.wait_for(writer, 10)
    other.close()
    statements = [sql for _thread, sql in seen]
    # The first, non-waiting attempt failed; the wait for the lock ran on the driver's thread.
    begins = [thread for thread, sql in seen if sql == "BEGIN IMMEDIATE"]
    assert begins[-1] != loop_thread, seen
    after = seen[len(statements) - statements[::-1].index("BEGIN IMMEDIATE") :]
    assert [sql for _t, sql in after] == ["INSERT INTO tally (n) VALUES (1)", "COMMIT"]
    assert {thread for thread, _sql in after} == {loop_thread}, after
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT sum(n) FROM tally"))).scalar_one() == 101
    await engine.dispose()


async def test_many_concurrent_writers_all_commit(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    sessions = create_session_factory(engine)

    async def one(n: int) -> None:
        async with sessions() as session, session.begin():
            await session.execute(text("INSERT INTO tally (n) VALUES (:n)"), {"n": n})
            await asyncio.sleep(0)  # another writer gets the loop, not the lock
            await session.execute(text("UPDATE tally SET n = n WHERE n = :n"), {"n": n})

    await asyncio.gather(*(one(n) for n in range(60)))
    async with engine.connect() as conn:
        count, total = (await conn.execute(text("SELECT count(*), sum(n) FROM tally"))).one()
    assert (count, total) == (60, sum(range(60)))
    await engine.dispose()


def _rollback_journal_database(path: Path) -> None:
    """A database as a fresh Alembic run used to leave it: SQLite's default journal, not yet WAL."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE tally (n INTEGER)")
    raw.commit()
    raw.close()


def test_processes_opening_a_new_database_together_all_get_wal(tmp_path: Path) -> None:
    """Six connections ask for WAL at once on a file still in the rollback journal (processes starting
    together on a new database): each is answered, in WAL. SQLite itself answers some of them "database is
    locked" at once, without its busy handler: a bare PRAGMA failed in 9 of 100 such rounds here, which
    ended a webhook process's start in CI (test_two_processes_setting_the_webhook_together_both_start)."""
    path = tmp_path / "new.db"

    def connect(barrier: threading.Barrier, failed: list[str], modes: list[str]) -> None:
        raw = sqlite3.connect(path, timeout=30)
        barrier.wait()
        try:
            use_wal(raw)
            modes.append(raw.execute("PRAGMA journal_mode").fetchone()[0])
        except sqlite3.OperationalError as exc:
            failed.append(str(exc))
        finally:
            raw.close()

    for _ in range(100):
        _rollback_journal_database(path)
        barrier, failed, modes = threading.Barrier(6), [], []
        threads = [threading.Thread(target=connect, args=(barrier, failed, modes)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failed == []
        assert modes == ["wal"] * 6


async def test_two_engines_starting_on_a_new_database_both_connect(tmp_path: Path) -> None:
    """The same through the project's engines: two processes' first connections, together."""
    path = tmp_path / "engines.db"
    for _ in range(20):
        _rollback_journal_database(path)
        engines = [create_engine(f"sqlite+aiosqlite:///{path}") for _ in range(2)]
        try:

            async def count(engine: AsyncEngine) -> int:
                async with engine.connect() as conn:
                    return int((await conn.execute(text("SELECT count(*) FROM tally"))).scalar_one())

            assert await asyncio.gather(*(count(e) for e in engines)) == [0, 0]
        finally:
            for engine in engines:
                await engine.dispose()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_migrated_database_is_wal_from_the_start(tmp_path: Path) -> None:
    """Alembic's own engine sets WAL too, so processes starting on a new database find nothing to convert."""
    from bot.migrate import upgrade

    path = tmp_path / "migrated.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    assert path.read_bytes()[18:20] == b"\x02\x02"  # the header's read/write versions: 2 means WAL


def test_no_filter_or_handler_runs_in_a_worker_thread(tmp_path: Path) -> None:
    from infra.settings import Settings
    from telegram_ui.i18n import create_i18n

    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")  # type: ignore[call-arg]
    engine = create_engine(settings.database_url)
    dp = create_dispatcher(settings, create_database(engine), create_i18n())
    found: list[Any] = []

    def walk(router: Any) -> None:
        for observer in router.observers.values():
            found.extend(observer._handler.filters or ())
            for handler in observer.handlers:
                found.extend([handler, *(handler.filters or ())])
        for sub in router.sub_routers:
            walk(sub)

    walk(dp)
    assert len(found) > 50
    assert [item for item in found if not item.awaitable] == []
    assert run_sync_callbacks_inline(dp) == 0  # nothing left to change


def test_api_result_models_survive_garbage_collection() -> None:
    """pydantic caches `Response[Message]` weakly; rebuilt after every collection it cost 2.6 ms a call."""
    import gc
    import weakref

    from aiogram.methods import EditMessageText, Response, SendMessage

    from bot.factory import keep_response_models

    assert keep_response_models() > 100

    def parametrised(method: Any) -> weakref.ref[Any]:
        return weakref.ref(Response[method.__returning__])

    refs = [parametrised(SendMessage), parametrised(EditMessageText)]
    gc.collect()
    assert all(ref() is not None for ref in refs)


async def test_only_replayable_transactions_skip_the_fsync(
    app: Runtime, sessions: async_sessionmaker[AsyncSession], tg: StandIn, audio_dir: Path
) -> None:
    """A whole contact through the real bot, each committed transaction's PRAGMA synchronous read back
    from SQLite at its commit: the inbox's store (what Telegram is told arrived) and the outbox's record of
    a sent message commit durably (2, FULL); an update's own work, which removes it from the inbox, commits
    without the WAL's fsync (1, NORMAL); and what a handler writes after its first reply is durable again
    (infra.db.replayable says why)."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's synchronous levels; PostgreSQL commits as it is configured")
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    open_: dict[int, list[str]] = {}
    committed: list[tuple[int, list[str]]] = []

    def statement(conn: Connection, _cursor: Any, sql: str, *_args: Any) -> None:
        open_.setdefault(id(conn.connection.dbapi_connection), []).append(sql)

    def commit(conn: Connection) -> None:
        raw = conn.connection.dbapi_connection
        level = raw._connection._conn.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[union-attr]
        committed.append((level, open_.pop(id(raw), [])))

    def rollback(conn: Connection) -> None:
        open_.pop(id(conn.connection.dbapi_connection), None)

    for name, listener in (("before_cursor_execute", statement), ("commit", commit), ("rollback", rollback)):
        event.listen(app.engine.sync_engine, name, listener)
    await fill_default_form(tg, promoter)
    await promoter.send_voice(audio_dir / "dialogue.ogg")
    await promoter.expect("received")
    await app.settled()

    def levels(*, having: str, lacking: str | None = None) -> set[int]:
        found = {
            level
            for level, sqls in committed
            if any(sql.startswith(having) for sql in sqls)
            and not (lacking and any(sql.startswith(lacking) for sql in sqls))
        }
        assert found, f"no committed transaction ran {having!r}"
        return found

    assert levels(having="INSERT INTO inbox_update") == {2}
    assert levels(having="DELETE FROM inbox_update") == {1}  # seven form steps and the voice note
    assert len([1 for level, _sqls in committed if level == 1]) == 8
    assert levels(having="INSERT INTO contact") == {1}
    # The enrolment offer written after the receipt's commit, in no transaction that could be replayed.
    assert levels(having="INSERT INTO outbox_message", lacking="DELETE FROM inbox_update") == {2}
    assert levels(having="UPDATE outbox_message") == {2}
    # Nothing else, anywhere, began relaxed: jobs, the outbox, readers all commit durably.
    async with app.engine.connect() as conn, conn.begin():
        raw = (await conn.get_raw_connection()).driver_connection._conn  # type: ignore[union-attr]
        assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2
