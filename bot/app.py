"""Runtime wiring: build every piece from settings, then run polling or the webhook server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gc
import random
import signal
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    TelegramConflictError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.fsm.storage.base import BaseStorage
from aiogram.types import BotCommand
from aiogram.utils.i18n import I18n
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot import leader
from bot.factory import create_bot, create_dispatcher, create_scheduler, create_send_budget
from bot.inbox import UpdateInbox
from bot.migrate import ensure_sqlite_dir, upgrade_async
from bot.send_budget import BACKGROUND
from bot.throttle import Throttle
from infra.db import Database, create_engine
from infra.settings import Settings
from infra.storage import create_audio_store
from jobs.outbox import OutboxSender, default_anchors
from services import health
from services.unit_of_work import create_database
from telegram_ui.i18n import LOCALES, create_i18n
from web.app import PREFIX, create_console

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    i18n: I18n
    bot: Bot
    dp: Dispatcher
    scheduler: AsyncIOScheduler
    outbox: OutboxSender
    inbox: UpdateInbox
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    is_leader: bool = False

    @property
    def engine(self) -> AsyncEngine:
        return self.db.writer

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        return self.db.sessions

    def start_background(self, *, scheduler: bool = True) -> None:
        """The scheduler's jobs and the outbox sender: bot-initiated work beside the update handling. On
        PostgreSQL only the elected leader among the bot's processes does it (bot/leader.py)."""
        if self.db.dialect == "postgresql" and self.settings.leader_election:
            duties = functools.partial(self._lead, scheduler)
            poll = self.settings.leader_poll_seconds
            self._background.append(
                asyncio.create_task(leader.lead_when_elected(self.db.writer, duties, self._stop, poll))
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
        await self.db.close()


async def build_runtime(settings: Settings, *, storage: BaseStorage | None = None) -> Runtime:
    settings.configure_data_keys()
    if settings.migrate_on_start:
        log.info("migrating", database=_safe_url(settings.database_url))
        await upgrade_async(settings.database_url)
    ensure_sqlite_dir(settings.database_url)
    engine = create_engine(settings.database_url, inline_while_locked=settings.sqlite_inline_while_locked)
    db = create_database(engine)  # the process's one Database, closed with the runtime
    session_factory = db.sessions
    i18n = create_i18n(settings.default_locale)
    budget = create_send_budget(settings)  # one for the bot's answers and its outbox (bot/send_budget.py)
    bot = create_bot(settings, budget=budget)
    dp = create_dispatcher(settings, db, i18n, storage=storage)
    scheduler = create_scheduler(settings, db, bot, i18n)
    return Runtime(
        settings,
        db,
        i18n,
        bot,
        dp,
        scheduler,
        OutboxSender(
            create_bot(settings, retry=False, budget=budget, priority=BACKGROUND),
            db,
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


@dataclass
class Readiness:
    """What /healthz and the webhook path see of this process while it starts. Until `runtime` is set (the
    database not reached yet) the webhook path answers 503, so Telegram delivers again later; until `ready`
    (the webhook registered, polling begun) /healthz answers 503 with what it is waiting for."""

    runtime: Runtime | None = None
    ready: bool = False
    waiting_for: str = "starting"
    attempts: int = 0


DB_FIRST_DELAY = 1.0  # seconds before the second try to reach the database at start; doubles each try
DB_MAX_DELAY = 30.0
DB_TRY_TIMEOUT = 15.0  # one try (connect, and the migrations when MIGRATE_ON_START) at most this long


async def _reach_database(settings: Settings) -> None:
    """One try: connect and run a trivial query (a plain engine: no pool, no BEGIN IMMEDIATE), then migrate
    when asked to."""
    ensure_sqlite_dir(settings.database_url)
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    if settings.migrate_on_start:
        log.info("migrating", database=_safe_url(settings.database_url))
        await upgrade_async(settings.database_url)


async def wait_for_database(
    settings: Settings,
    readiness: Readiness,
    stop: asyncio.Event,
    *,
    first_delay: float = DB_FIRST_DELAY,
    max_delay: float = DB_MAX_DELAY,
) -> bool:
    """Keeps trying to reach (and migrate) the database with back-off instead of exiting: a service started
    before its database (a host reboot, a rolling deploy) comes up once the database does. Each failed try
    is logged once (`database_unreachable`, with the try's number and the wait before the next); /healthz
    says not ready meanwhile. False when stopped before the database answered."""
    delay = first_delay
    while not stop.is_set():
        readiness.attempts += 1
        try:
            async with asyncio.timeout(DB_TRY_TIMEOUT):
                await _reach_database(settings)
        except Exception as exc:  # any failure: down, refusing, not resolvable, timing out, mid-restart
            wait = delay * random.uniform(0.8, 1.2)  # several processes do not retry in step
            readiness.waiting_for = "database unreachable"
            log.warning(
                "database_unreachable",
                attempt=readiness.attempts,
                retry_in=round(wait, 2),
                database=_safe_url(settings.database_url),
                error=type(exc).__name__,
                detail=str(exc)[:300],
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            delay = min(delay * 2, max_delay)
            continue
        if readiness.attempts > 1:
            log.info("database_reachable", attempts=readiness.attempts)
        readiness.waiting_for = "starting"
        return True
    return False


async def start_runtime(settings: Settings, readiness: Readiness, stop: asyncio.Event) -> Runtime | None:
    """The runtime once the database answers (migrated when MIGRATE_ON_START); None when stopped first."""
    if not await wait_for_database(settings, readiness, stop):
        return None
    return await build_runtime(settings.model_copy(update={"migrate_on_start": False}))


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def run_polling(settings: Settings) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    readiness = Readiness()
    health = await serve_http(settings, readiness, webhook=False) if settings.health_port else None
    runtime: Runtime | None = None
    try:
        runtime = await start_runtime(settings, readiness, stop)
        if runtime is None:
            return
        await runtime.bot.delete_webhook(drop_pending_updates=False)
        await set_commands(runtime.bot, runtime.i18n)
        runtime.start_background()
        readiness.runtime, readiness.ready = runtime, True
        log.info("polling_started", api=settings.telegram_api_url)
        settle_heap()
        await runtime.inbox.poll(stop)
    finally:
        if health is not None:
            await health.cleanup()
        if runtime is not None:
            await runtime.close()


def http_app(settings: Settings, readiness: Readiness, *, webhook: bool = True) -> web.Application:
    """/healthz, and in webhook mode the webhook path; both answer 503 until the runtime is ready."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    app = web.Application()
    handlers: dict[str, Any] = {}

    async def receive(request: web.Request) -> web.StreamResponse:
        runtime = readiness.runtime
        if runtime is None:  # not stored: Telegram delivers it again
            return web.Response(status=503, text="starting")
        if "webhook" not in handlers:
            handlers["webhook"] = runtime.inbox.webhook_handler(secret)
        response: web.StreamResponse = await handlers["webhook"](request)
        return response

    async def healthz(_request: web.Request) -> web.Response:
        runtime = readiness.runtime
        if runtime is None or not readiness.ready:
            body: dict[str, Any] = {
                "ok": False,
                "ready": False,
                "problems": [readiness.waiting_for],
                "database_attempts": readiness.attempts,
            }
            return web.json_response(body, status=503)
        try:
            async with runtime.session_factory() as session:
                body = await health.report(session)
        except Exception as exc:  # the database itself is unreachable
            body = {"ok": False, "problems": ["database unreachable"], "database": type(exc).__name__}
        body["ready"] = True
        return web.json_response(body, status=200 if body["ok"] else 503)

    if webhook:
        app.router.add_post(settings.webhook_path, receive)
    app.router.add_get("/healthz", healthz)
    if webhook and settings.web_with_webhook:  # the managers' console beside the webhook (web/, issue #26)
        app.add_subapp(PREFIX, create_console(settings))
    return app


def webhook_app(runtime: Runtime) -> web.Application:
    return http_app(runtime.settings, Readiness(runtime=runtime, ready=True))


async def serve_http(settings: Settings, readiness: Readiness, *, webhook: bool) -> web.AppRunner:
    runner = web.AppRunner(http_app(settings, readiness, webhook=webhook), access_log=None)
    await runner.setup()
    if webhook:
        host, port = settings.webhook_host, settings.webhook_port
    else:
        host, port = settings.health_host, int(settings.health_port or 0)
    await web.TCPSite(runner, host, port).start()
    return runner


WEBHOOK_FIRST_DELAY = 0.5  # seconds before setWebhook is tried again; doubles each try
WEBHOOK_MAX_DELAY = 30.0


async def register_webhook(runtime: Runtime, *, first_delay: float = WEBHOOK_FIRST_DELAY) -> None:
    """setWebhook, tried again with back-off while it fails for a reason that passes. Several processes
    starting together all call it: telegram-bot-api answers 429 "Too Many Requests: retry after 1" to a
    second call within a second, and 409 "Conflict: terminated by other setWebhook" to a call still being
    verified when another arrives (Client.cpp, Client::process_set_webhook_query). Either means another
    process is registering the same webhook; the retry then finds it set ("Webhook is already set") or sets
    it. 5xx and network errors pass too. A 400 (a refused URL) is a configuration error and ends the start."""
    settings = runtime.settings
    assert settings.webhook_base_url and settings.webhook_secret
    url = settings.webhook_base_url.rstrip("/") + settings.webhook_path
    delay, attempt = first_delay, 0
    while True:
        attempt += 1
        try:
            await runtime.bot.set_webhook(
                url,
                secret_token=settings.webhook_secret.get_secret_value(),
                allowed_updates=runtime.dp.resolve_used_update_types(),
            )
            if attempt > 1:
                log.info("webhook_set", attempts=attempt)
            return
        except TelegramRetryAfter as exc:
            wait = max(float(exc.retry_after), delay) * random.uniform(1.0, 1.5)
            reason = "flood limit"
        except TelegramConflictError:
            wait = delay * random.uniform(0.5, 1.5)
            reason = "terminated by another setWebhook"
        except (TelegramServerError, TelegramNetworkError):
            wait = delay * random.uniform(0.5, 1.5)
            reason = "telegram unavailable"
        log.warning("webhook_set_retry", attempt=attempt, reason=reason, retry_in=round(wait, 2))
        await asyncio.sleep(wait)
        delay = min(delay * 2, WEBHOOK_MAX_DELAY)


async def start_webhook_server(
    runtime: Runtime, serving: tuple[web.AppRunner, Readiness] | None = None
) -> web.AppRunner:
    """Serve the webhook and register it with Telegram (with the secret token Telegram echoes back).
    `serving`: the server already answering /healthz for this process and what it reports (run_webhook
    starts it before the database is reached); without it, a server is started here."""
    settings = runtime.settings
    if not settings.webhook_base_url or not settings.webhook_secret:
        raise SystemExit("WEBHOOK_BASE_URL and WEBHOOK_SECRET are required for webhook mode")
    await runtime.inbox.recover()  # what a killed process left, before new updates arrive
    if serving is None:
        readiness = Readiness()
        runner = await serve_http(settings, readiness, webhook=True)
    else:
        runner, readiness = serving
    readiness.runtime = runtime  # updates are taken from here on
    await register_webhook(runtime)
    await set_commands(runtime.bot, runtime.i18n)
    readiness.ready = True
    log.info("webhook_started", port=settings.webhook_port, path=settings.webhook_path)
    return runner


async def run_webhook(settings: Settings) -> None:
    if not settings.webhook_base_url or not settings.webhook_secret:
        raise SystemExit("WEBHOOK_BASE_URL and WEBHOOK_SECRET are required for webhook mode")
    stop = asyncio.Event()
    _stop_on_signals(stop)
    readiness = Readiness()
    runner = await serve_http(settings, readiness, webhook=True)  # /healthz says "not ready" meanwhile
    runtime: Runtime | None = None
    try:
        runtime = await start_runtime(settings, readiness, stop)
        if runtime is None:
            return
        await start_webhook_server(runtime, (runner, readiness))
        runtime.start_background()
        settle_heap()
        await runtime.inbox.sweep_forever(stop)  # runs until the process is stopped
    finally:
        await runner.cleanup()
        if runtime is not None:
            await runtime.close()


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
