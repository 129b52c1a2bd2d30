"""Downloads from Telegram that ride out its short outages.

getFile answers 400 "wrong file_id or the file is temporarily unavailable" while Telegram cannot reach a
file for the moment (its file servers or a data centre out for a while); the same file_id works again
later (telegram-bot-api Client.cpp process_get_file_query passes tdlib's download error on through
fail_query_with_error; the stand-in models it with StandIn.file_temporarily_unavailable). A few tries with
back-off come before the person is asked to send the file again.
"""

from __future__ import annotations

import asyncio
from typing import BinaryIO

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest

log = structlog.get_logger(__name__)
TEMPORARILY_UNAVAILABLE = "temporarily unavailable"
DOWNLOAD_BACKOFF = (0.5, 1.0, 2.0, 4.0)  # seconds before each further try: five tries in about 8 s


async def download(bot: Bot, file_id: str, destination: BinaryIO) -> None:
    """bot.download with the transient getFile refusal retried (DOWNLOAD_BACKOFF); other errors raise."""
    for attempt, pause in enumerate((*DOWNLOAD_BACKOFF, None), start=1):
        try:
            await bot.download(file_id, destination=destination)
            return
        except TelegramBadRequest as exc:
            if TEMPORARILY_UNAVAILABLE not in exc.message or pause is None:
                raise
            log.warning("download_temporarily_unavailable", attempt=attempt, retry_in=pause)
        destination.seek(0)
        destination.truncate()
        await asyncio.sleep(pause)
