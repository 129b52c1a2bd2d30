"""Fixtures: a fresh database per test (SQLite, or PostgreSQL with FIELDCHECK_TEST_DB=postgres), the Bot API
stand-in on loopback, and the real bot polling it over HTTP."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import Runtime
from bot.logs import console_renderer
from bot.migrate import upgrade
from infra.db import Database
from infra.db import create_engine as create_async_engine_for
from infra.settings import Settings
from models import crypto
from sandbox.harness import running_bot
from services.unit_of_work import create_database
from telegram_standin import StandIn, UserClient

# The bot's console format (bot.logs) with plain tracebacks, loggers not cached (structlog.testing.capture_logs).
structlog.configure(processors=[*structlog.get_config()["processors"][:-1], console_renderer()])

TOKEN = "123456:test-token"
ADMIN_ID = 900
DATA_KEY = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZy1rZXk="  # Fernet key of the tests (never a real one)
PG_ADMIN_URL = os.environ.get("FIELDCHECK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
USE_POSTGRES = os.environ.get("FIELDCHECK_TEST_DB", "sqlite") == "postgres"
# With a Redis URL, every bot in the suite keeps its conversations there (RedisStorage), as a deployment with
# REDIS_URL does; the database is emptied before each test. scripts/test sets it for the PostgreSQL run.
TEST_REDIS_URL = os.environ.get("FIELDCHECK_TEST_REDIS") or None


def postgres_available() -> bool:
    try:
        asyncio.run(_pg_execute("SELECT 1"))
    except (OSError, asyncpg.PostgresError):
        return False
    return True


async def _pg_execute(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def make_database(tmp_path: Path, backend: str) -> Iterator[str]:
    """A throwaway database; yields its async SQLAlchemy URL and drops it afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    name = f"fc_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    yield from make_database(tmp_path, "postgres" if USE_POSTGRES else "sqlite")


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine_for(migrated_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def db(engine: AsyncEngine) -> Database:
    """The tests' Database over `engine` (its own, beside the running bot's), as a process makes one."""
    return create_database(engine)


@pytest.fixture
def sessions(db: Database) -> async_sessionmaker[AsyncSession]:
    return db.sessions


@pytest.fixture
async def tg(tmp_path: Path) -> AsyncIterator[StandIn]:
    async with StandIn(files_dir=tmp_path / "telegram") as standin:
        yield standin


@pytest.fixture
async def redis_url() -> AsyncIterator[str | None]:
    if TEST_REDIS_URL is None:
        yield None
        return
    from redis.asyncio import Redis

    client = Redis.from_url(TEST_REDIS_URL)
    await client.flushdb()
    await client.aclose()
    yield TEST_REDIS_URL


@pytest.fixture
def settings(tg: StandIn, migrated_url: str, tmp_path: Path, redis_url: str | None) -> Settings:
    return Settings(
        _env_file=None,
        data_keys=SecretStr(DATA_KEY),
        bot_token=TOKEN,
        telegram_api_url=tg.base_url,
        database_url=migrated_url,
        admin_ids=[ADMIN_ID],
        redis_url=redis_url,
        storage_root=tmp_path / "audio",
        throttle_rate_per_second=50,
        throttle_burst=50,
        migrate_on_start=False,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Runtime]:
    async with running_bot(settings, start_scheduler=False) as runtime:
        yield runtime


@pytest.fixture(autouse=True, scope="session")
def data_key() -> None:
    """Services that seal personal data need a keyring even where no bot runs (the bot sets the same)."""
    crypto.configure([DATA_KEY])


@pytest.fixture
async def raw_bot(tg: StandIn) -> AsyncIterator[Bot]:
    """A bare aiogram Bot on the stand-in, with no retry middleware: each call is one HTTP request, so a test
    counts faults and calls exactly."""
    bot = Bot(TOKEN, session=AiohttpSession(api=tg.api_server))
    yield bot
    await bot.session.close()


@pytest.fixture
def admin(tg: StandIn) -> UserClient:
    return tg.user(ADMIN_ID, "Anna", token=TOKEN, language_code="ru")


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Voice notes shared by the whole session (synthesising them takes a second or two each)."""
    from sandbox import demo_audio as audio

    folder = tmp_path_factory.mktemp("audio")
    audio.speech(folder / "dialogue.ogg")  # about 12 s
    audio.speech(folder / "dialogue2.ogg", voice="en+f3", speed=150)
    audio.speech(folder / "enrol.ogg", repeats=2, voice="en+m3")  # about 24 s
    audio.speech(folder / "long.ogg", repeats=8)  # about 95 s
    audio.silence(folder / "silence.ogg", 15)
    audio.tone(folder / "short.mp3", 3)
    (folder / "notes.txt").write_text("not audio at all", encoding="utf-8")
    (folder / "broken.ogg").write_bytes(b"OggS" + bytes(range(256)) * 40)
    return folder
