"""Runtime wiring: build every piece from settings, then run polling or the webhook server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gc
import signal
from dataclasses import dataclass, field

import structlog
from aiogram import Bot, Dispatcher
from aiogram.fsm.storage.base import BaseStorage
from aiogram.types import BotCommand
from aiogram.utils.i18n import I18n
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import leader
from bot.config import Settings
from bot.factory import create_bot, create_dispatcher, create_scheduler
from bot.i18n import LOCALES, create_i18n
from bot.inbox import UpdateInbox
from bot.migrate import ensure_sqlite_dir, upgrade_async
from bot.throttle import Throttle
from jobs.outbox import OutboxSender, default_anchors
from services import health
from services.db import create_engine, create_session_factory
from services.storage import create_audio_store

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    i18n: I18n
    bot: Bot
    dp: Dispatcher
    scheduler: AsyncIOScheduler
    outbox: OutboxSender
    inbox: UpdateInbox
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    is_leader: bool = False

    def start_background(self, *, scheduler: bool = True) -> None:
        """The scheduler's jobs and the outbox sender: bot-initiated work beside the update handling. On
        PostgreSQL only the elected leader among the bot's processes does it (bot/leader.py)."""
        if self.engine.dialect.name == "postgresql" and self.settings.leader_election:
            duties = functools.partial(self._lead, scheduler)
            poll = self.settings.leader_poll_seconds
            self._background.append(
                asyncio.create_task(leader.lead_when_elected(self.engine, duties, self._stop, poll))
            )
            return
        self._background.append(asyncio.create_task(self._lead(scheduler, self._stop)))

    async def _lead(self, scheduler: bool, relieved: asyncio.Event) -> None:
        if scheduler:
            if self.scheduler.running:
                self.scheduler.resume()
            else:
                self.scheduler.start()
        self.is_leader = True
        try:
            await self.outbox.run(relieved)
        finally:
            self.is_leader = False
            if scheduler and self.scheduler.running:
                self.scheduler.pause()  # another process may be leading now: no job runs twice

    async def settled(self) -> None:
        """Every update received so far is handled and committed."""
        async with asyncio.timeout(30):
            await self.dp["in_flight"].wait_idle()

    async def close(self) -> None:
        """Graceful stop: updates in flight finish and commit, the outbox finishes its current message."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await self.inbox.wait_handled()
        with contextlib.suppress(TimeoutError):
            await self.settled()
        self._stop.set()
        for task in self._background:
            await task
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.bot.session.close()
        await self.outbox.bot.session.close()
        await self.dp.storage.close()
        await self.engine.dispose()


async def build_runtime(settings: Settings, *, storage: BaseStorage | None = None) -> Runtime:
    settings.configure_data_keys()
    if settings.migrate_on_start:
        log.info("migrating", database=_safe_url(settings.database_url))
        await upgrade_async(settings.database_url)
    ensure_sqlite_dir(settings.database_url)
    engine = create_engine(settings.database_url)
    session_factory = create_session_factory(engine)
    i18n = create_i18n(settings.default_locale)
    bot = create_bot(settings)
    dp = create_dispatcher(settings, session_factory, i18n, storage=storage)
    scheduler = create_scheduler(settings, session_factory, bot, i18n)
    return Runtime(
        settings,
        engine,
        session_factory,
        i18n,
        bot,
        dp,
        scheduler,
        OutboxSender(
            create_bot(settings, retry=False),
            session_factory,
            audio_store=create_audio_store(settings),
            stale_after=dt.timedelta(seconds=settings.outbox_stale_seconds),
            anchors=default_anchors(),
        ),
        UpdateInbox(
            bot,
            dp,
            session_factory,
            i18n,
            throttle=Throttle(settings.throttle_rate_per_second, settings.throttle_burst),
        ),
    )


BOT_COMMANDS = ("start", "new", "my", "enrol", "cancel", "help", "lang")
GC_YOUNG_THRESHOLD = 10_000  # Python's default is 700 allocations between young collections


def settle_heap() -> None:
    """Once started: what start-up built (modules, aiogram's and pydantic's models and schemas, SQLAlchemy's
    mappers) lives as long as the process, so it is frozen out of the collector's scans, and young
    collections run less often. Under load the collector had been 5% of the bot's CPU, most of it
    re-scanning those objects (bench/update_cost.py reports its share)."""
    gc.collect()
    gc.freeze()
    _young, *older = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


async def set_commands(bot: Bot, i18n: I18n) -> None:
    for locale in LOCALES:
        with i18n.context(), i18n.use_locale(locale):
            commands = [
                BotCommand(command=name, description=i18n.gettext(f"cmd-{name}")) for name in BOT_COMMANDS
            ]
        await bot.set_my_commands(commands, language_code=locale)


async def run_polling(settings: Settings) -> None:
    runtime = await build_runtime(settings)
    try:
        await runtime.bot.delete_webhook(drop_pending_updates=False)
        await set_commands(runtime.bot, runtime.i18n)
        runtime.start_background()
        log.info("polling_started", api=settings.telegram_api_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        settle_heap()
        await runtime.inbox.poll(stop)
    finally:
        await runtime.close()


def webhook_app(runtime: Runtime) -> web.Application:
    settings = runtime.settings
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    app = web.Application()
    app.router.add_post(settings.webhook_path, runtime.inbox.webhook_handler(secret))

    async def healthz(_request: web.Request) -> web.Response:
        try:
            async with runtime.session_factory() as session:
                body = await health.report(session)
        except Exception as exc:  # the database itself is unreachable
            body = {"ok": False, "problems": ["database unreachable"], "database": type(exc).__name__}
        return web.json_response(body, status=200 if body["ok"] else 503)

    app.router.add_get("/healthz", healthz)
    return app


async def start_webhook_server(runtime: Runtime) -> web.AppRunner:
    """Serve the webhook and register it with Telegram (with the secret token Telegram echoes back)."""
    settings = runtime.settings
    if not settings.webhook_base_url or not settings.webhook_secret:
        raise SystemExit("WEBHOOK_BASE_URL and WEBHOOK_SECRET are required for webhook mode")
    await runtime.inbox.recover()  # what a killed process left, before new updates arrive
    runner = web.AppRunner(webhook_app(runtime), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.webhook_host, settings.webhook_port).start()
    await runtime.bot.set_webhook(
        settings.webhook_base_url.rstrip("/") + settings.webhook_path,
        secret_token=settings.webhook_secret.get_secret_value(),
        allowed_updates=runtime.dp.resolve_used_update_types(),
    )
    await set_commands(runtime.bot, runtime.i18n)
    log.info("webhook_started", port=settings.webhook_port, path=settings.webhook_path)
    return runner


async def run_webhook(settings: Settings) -> None:
    runtime = await build_runtime(settings)
    runner: web.AppRunner | None = None
    try:
        runner = await start_webhook_server(runtime)
        runtime.start_background()
        settle_heap()
        await runtime.inbox.sweep_forever(asyncio.Event())  # runs until the process is stopped
    finally:
        if runner is not None:
            await runner.cleanup()
        await runtime.close()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
