"""Sending a stored recording to a person: a voice note, or the same audio as a file to someone who takes
voice notes from contacts only. The outbox's sender and the manager's "Open contact" both send recordings
this way, so it lives in the presentation layer that both may use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, Message

from infra.messages import SendVoice
from infra.storage import AudioStore

log = structlog.get_logger(__name__)


# How Telegram refuses a voice note to a person who takes them from contacts only (see
# telegram_standin.state.VOICE_REFUSALS for where each wording comes from): the server's own
# VOICE_MESSAGES_FORBIDDEN, or tdlib's "user restricted receiving of ... messages" (MessageContent.cpp
# can_send_message_content; "voice note messages" now, "video"/"voice messages" in older versions).
VOICE_REFUSED = ("VOICE_MESSAGES_FORBIDDEN", "restricted receiving of")


def voice_refused(exc: TelegramBadRequest) -> bool:
    return any(marker.lower() in exc.message.lower() for marker in VOICE_REFUSED)


async def send_recording(
    bot: Bot,
    audio_store: AudioStore | None,
    chat_id: int,
    recording: SendVoice,
    keyboard: InlineKeyboardMarkup | None = None,
) -> Message:
    """A recording as a voice note; to someone who accepts voice notes from contacts only (any wording of
    VOICE_REFUSED), the same audio as a file with a caption that says why.

    A recording without a voice file_id (it came as an audio file or a document: sendVoice with that id
    would re-send the stored file as it is, a music player or a file) is uploaded from the store, where
    intake keeps it as a voice note (Ogg/Opus, services.audio.encode_voice_note)."""
    voice: str | BufferedInputFile | None = recording.voice
    key = recording.audio_key or ""
    if not voice:
        if audio_store is None or not key or not await asyncio.to_thread(audio_store.exists, key):
            # Purged by retention, or never stored: the caller sends what else it has (the card's text).
            raise FileNotFoundError("recording without a voice file id or a stored copy")
        data = await asyncio.to_thread(audio_store.get, key)
        voice = BufferedInputFile(data, "recording.ogg")
    try:
        return await bot.send_voice(chat_id, voice, caption=recording.caption, reply_markup=keyboard)
    except TelegramBadRequest as exc:
        if not voice_refused(exc) or audio_store is None or not key:
            raise
    data = await asyncio.to_thread(audio_store.get, key)
    log.info("voice_forbidden_sent_as_file", chat_id=chat_id)
    return await bot.send_document(
        chat_id,
        BufferedInputFile(data, "recording" + (Path(key).suffix or ".ogg")),
        caption=recording.file_caption,
        reply_markup=keyboard,
    )
