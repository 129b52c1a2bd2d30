"""Request middleware: wait out Telegram flood limits and retry transient server errors.

One policy per path: interactive calls retry briefly here; the outbox (its own Bot, without this
middleware) owns long back-off. A callback answer is worth something only while the person's spinner
turns (Telegram drops the query after about 15 s), so it gets one short retry and its failure never fails
the press: the work of the press is what counts."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import AnswerCallbackQuery, GetUpdates, Response, SetWebhook, TelegramMethod

log = structlog.get_logger(__name__)
CALLBACK_ANSWER_BUDGET = 2.0  # seconds a callback answer may wait out a flood limit, once


class RetryMiddleware(BaseRequestMiddleware):
    """429 is waited out for the time Telegram asks; 5xx and network errors back off exponentially."""

    def __init__(self, max_attempts: int = 5, base_delay: float = 0.5, max_retry_after: float = 60.0) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_retry_after = max_retry_after

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        if isinstance(method, GetUpdates | SetWebhook):  # the polling loop and bot.app.register_webhook
            # have their own back-off (a 409 from a racing setWebhook is theirs to retry, with jitter)
            return await make_request(bot, method)
        if isinstance(method, AnswerCallbackQuery):
            return await self._answer_promptly(make_request, bot, method)  # type: ignore[no-any-return]
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

    async def _answer_promptly(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: AnswerCallbackQuery
    ) -> Any:
        for attempt in (1, 2):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == 2 or exc.retry_after > CALLBACK_ANSWER_BUDGET:
                    return self._answer_lost(method, exc)
                await asyncio.sleep(exc.retry_after)
            except (TelegramServerError, TelegramNetworkError) as exc:
                if attempt == 2:
                    return self._answer_lost(method, exc)
                await asyncio.sleep(min(self.base_delay, CALLBACK_ANSWER_BUDGET))
            except TelegramAPIError as exc:  # expired, answered already, refused: nothing to retry
                return self._answer_lost(method, exc)
        return True  # not reached

    @staticmethod
    def _answer_lost(method: AnswerCallbackQuery, exc: Exception) -> bool:
        log.warning("callback_answer_failed", query_id=method.callback_query_id, error=str(exc))
        return True  # the press itself was handled; only its little notice is lost
