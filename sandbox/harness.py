"""Run the real, unchanged bot against a Bot API stand-in: shared by the sandbox and the tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from bot.app import Runtime, build_runtime, set_commands
from infra.settings import Settings

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, *, start_scheduler: bool = True) -> AsyncIterator[Runtime]:
    """Polling over real HTTP to `settings.telegram_api_url`; stopped cleanly on exit."""
    runtime = await build_runtime(settings)
    await set_commands(runtime.bot, runtime.i18n)
    runtime.start_background(scheduler=start_scheduler)
    runtime.inbox.polling_timeout = 1
    stop = asyncio.Event()
    polling = asyncio.create_task(runtime.inbox.poll(stop))
    try:
        await _wait_started(runtime, polling)
        yield runtime
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(polling, 10)
        await runtime.close()


async def _wait_started(runtime: Runtime, polling: asyncio.Task[None]) -> None:
    started = asyncio.ensure_future(runtime.inbox.started.wait())
    done, _ = await asyncio.wait({started, polling}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if polling in done:
        polling.result()  # re-raise why it stopped
        raise RuntimeError("polling stopped before it started")
    if started not in done:
        started.cancel()
        raise RuntimeError("polling did not start")
