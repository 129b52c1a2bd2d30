"""Explicit factories: nothing is built at import time, so tests and the sandbox wire their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import Bot, Dispatcher, Router
from aiogram import methods as aiogram_methods
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.dispatcher.event.handler import CallableObject
from aiogram.enums import ParseMode
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.storage.base import BaseStorage
from aiogram.methods import Response, TelegramMethod
from aiogram.utils.i18n import I18n
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.fsm_storage import SqlStorage
from bot.middlewares import (
    CurrentUserMiddleware,
    DbSessionMiddleware,
    DeduplicateUpdatesMiddleware,
    InFlightMiddleware,
    LocaleMiddleware,
)
from bot.reply_after_commit import CommitBeforeReplyMiddleware
from bot.send_budget import FOREGROUND, SendBudget, SendBudgetMiddleware
from bot.telegram_retry import RetryMiddleware
from handlers import create_routers
from infra.db import Database
from infra.settings import Settings
from infra.storage import create_audio_store
from jobs import register_jobs

_RESPONSE_MODELS: list[type[Response[Any]]] = []


def keep_response_models() -> int:
    """aiogram validates every API result with `Response[<the method's result type>]`, a generic model that
    pydantic caches only weakly: after each garbage collection the next call built the class again
    (2.6 ms here; under load 2-5% of the bot's event loop). Holding each one once keeps the cache warm."""
    if not _RESPONSE_MODELS:
        for name in aiogram_methods.__all__:
            method = getattr(aiogram_methods, name)
            if (
                isinstance(method, type)
                and issubclass(method, TelegramMethod)
                and method is not TelegramMethod
            ):
                _RESPONSE_MODELS.append(Response[method.__returning__])  # type: ignore[name-defined]
    return len(_RESPONSE_MODELS)


def create_bot(
    settings: Settings,
    *,
    token: str | None = None,
    retry: bool = True,
    budget: SendBudget | None = None,
    priority: int = FOREGROUND,
) -> Bot:
    """`retry=False` for the outbox's own Bot: the outbox owns long back-off, and a second policy under it
    would turn one 5xx into up to 40 calls before the outbox even saw it.

    `budget`: the process's one send budget (bot/send_budget.py), shared by the Bot that answers people
    (FOREGROUND) and the outbox's (BACKGROUND); innermost, so every try of a call is counted."""
    keep_response_models()
    secret = token or (settings.bot_token.get_secret_value() if settings.bot_token else None)
    if not secret:
        raise ValueError("BOT_TOKEN is not set")
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    session.middleware(CommitBeforeReplyMiddleware())  # outermost: commit once, before any retry
    if retry:
        session.middleware(RetryMiddleware())
    if budget is not None:
        session.middleware(SendBudgetMiddleware(budget, priority))
    return Bot(secret, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


def create_send_budget(settings: Settings) -> SendBudget:
    return SendBudget(settings.send_budget_per_second)


def create_storage(settings: Settings, session_factory: async_sessionmaker[AsyncSession]) -> BaseStorage:
    """Half-filled forms survive restarts: in Redis when configured, else in the application database."""
    if settings.redis_url:
        from aiogram.fsm.storage.redis import RedisStorage  # noqa: PLC0415  redis: only with REDIS_URL

        return RedisStorage.from_url(settings.redis_url)
    return SqlStorage(session_factory)


def create_dispatcher(
    settings: Settings,
    db: Database,
    i18n: I18n,
    *,
    storage: BaseStorage | None = None,
) -> Dispatcher:
    """`db` reaches handlers as workflow data (a handler's `db` argument) beside the update's `unit`."""
    session_factory = db.sessions
    dp = Dispatcher(
        storage=storage or create_storage(settings, session_factory),
        settings=settings,
        i18n=i18n,
        db=db,
        session_factory=session_factory,
        audio_store=create_audio_store(settings),
    )
    in_flight = InFlightMiddleware()
    dp["in_flight"] = in_flight
    # The update's session opens before aiogram reads the conversation state, so that read belongs to the
    # update's own transaction (one session per update; on SQLite no second writer waiting on the first).
    # aiogram's error middleware stays outermost: a handler's exception still rolls the session back.
    chain = dp.update.outer_middleware._middlewares
    fsm_at = next(i for i, m in enumerate(chain) if isinstance(m, FSMContextMiddleware))
    chain[fsm_at:fsm_at] = [in_flight, DbSessionMiddleware(session_factory)]
    dp.update.outer_middleware(DeduplicateUpdatesMiddleware())
    dp.update.outer_middleware(CurrentUserMiddleware(settings.admin_ids))
    dp.update.outer_middleware(LocaleMiddleware(i18n))
    dp.include_routers(*create_routers())
    if settings.aiogram_sync_inline:
        run_sync_callbacks_inline(dp)
    return dp


def run_sync_callbacks_inline(router: Router) -> int:
    """aiogram runs every synchronous filter (`F.text`, a State, a lambda) and handler in a worker thread
    (`asyncio.to_thread`). Ours are a few microseconds of attribute checks, and each hop resumes only when
    the event loop gets round to it: under load that was milliseconds per filter, inside the update's
    transaction, so on SQLite every other update waited for the write lock meanwhile. They run inline
    instead. Returns how many were changed (a test checks none is left)."""
    changed = 0
    for observer in router.observers.values():
        objects: list[CallableObject] = list(observer._handler.filters or ())
        for handler in observer.handlers:
            objects += [handler, *(handler.filters or ())]
        for callable_object in objects:
            if not callable_object.awaitable:
                callable_object.callback = _as_coroutine(callable_object.callback)
                callable_object.awaitable = True
                changed += 1
    return changed + sum(run_sync_callbacks_inline(sub) for sub in router.sub_routers)


def _as_coroutine(sync: Callable[..., Any]) -> Callable[..., Any]:
    async def run(*args: Any, **kwargs: Any) -> Any:
        return sync(*args, **kwargs)

    return run


def create_scheduler(settings: Settings, db: Database, bot: Bot, i18n: I18n) -> AsyncIOScheduler:
    """Jobs are re-registered at every start (replace_existing), so an in-memory job store is enough."""
    scheduler = AsyncIOScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
    )
    register_jobs(scheduler, settings=settings, db=db, bot=bot, i18n=i18n)
    return scheduler
