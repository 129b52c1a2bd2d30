"""Run the real, unchanged bot against a Bot API stand-in: shared by the sandbox and the tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from bot.app import Runtime, build_runtime, set_commands
from bot.config import Settings

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, *, start_scheduler: bool = True) -> AsyncIterator[Runtime]:
    """Polling over real HTTP to `settings.telegram_api_url`; stopped cleanly on exit."""
    runtime = await build_runtime(settings)
    await set_commands(runtime.bot, runtime.i18n)
    runtime.start_background(scheduler=start_scheduler)
    polling = asyncio.create_task(
        runtime.dp.start_polling(
            runtime.bot, handle_signals=False, close_bot_session=False, polling_timeout=1
        )
    )
    try:
        await _wait_started(runtime, polling)
        yield runtime
    finally:
        with contextlib.suppress(RuntimeError):  # not started: nothing to stop
            await runtime.dp.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(polling, 10)
        await runtime.close()


async def _wait_started(runtime: Runtime, polling: asyncio.Task[None]) -> None:
    for _ in range(200):
        if polling.done():
            polling.result()  # re-raise why it stopped
        if runtime.dp._running_lock.locked():
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("polling did not start")
