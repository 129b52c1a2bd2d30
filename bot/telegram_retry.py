"""Request middleware: wait out Telegram flood limits and retry transient server errors."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import GetUpdates, Response, TelegramMethod

log = structlog.get_logger(__name__)


class RetryMiddleware(BaseRequestMiddleware):
    """429 is waited out for the time Telegram asks; 5xx and network errors back off exponentially."""

    def __init__(self, max_attempts: int = 5, base_delay: float = 0.5, max_retry_after: float = 60.0) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_retry_after = max_retry_after

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        if isinstance(method, GetUpdates):  # the polling loop has its own back-off
            return await make_request(bot, method)
        attempt = 1
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt >= self.max_attempts or exc.retry_after > self.max_retry_after:
                    raise
                log.warning(
                    "telegram_flood_wait",
                    method=method.__api_method__,
                    retry_after=exc.retry_after,
                    attempt=attempt,
                )
                await asyncio.sleep(exc.retry_after)
            except (TelegramServerError, TelegramNetworkError) as exc:
                if attempt >= self.max_attempts:
                    raise
                delay = self.base_delay * 2 ** (attempt - 1)
                log.warning(
                    "telegram_transient_error",
                    method=method.__api_method__,
                    error=str(exc),
                    attempt=attempt,
                    delay=delay,
                )
                await asyncio.sleep(delay)
            attempt += 1
