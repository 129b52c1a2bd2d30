"""Delivery as the real Bot API server does it (issue #27 findings 3, 4, 5, 6, 8).

Each stand-in behaviour cites the real source where it is modelled (telegram_standin/state.py, server.py):
- a call whose connection drops still runs: telegram-bot-api HttpConnection::handle hands the query to
  ClientManager::send as soon as it is read; a hang-up only loses the answer (state.Fault.drop,
  BotApi._call, and method_delay, after which the call runs whether or not its caller is still there);
- sendVoice to a person who refuses voice notes: "VOICE_MESSAGES_FORBIDDEN" from the server, or tdlib's own
  "user restricted receiving of ... messages" (td/telegram/MessageContent.cpp can_send_message_content,
  lower-cased by Client.cpp fail_query_with_error; its words differ between versions: state.VOICE_REFUSALS);
- a file_id of an audio file or a document given to sendVoice is re-sent as it is stored (tdlib's
  FileManager lets any document-class file through; server._resent_kind);
- getFile's "wrong file_id or the file is temporarily unavailable" (state.FILE_TEMPORARILY_UNAVAILABLE);
- flood waits are per chat: a 429 is answered to the call that went over a chat's limit (Client.cpp
  fail_query_with_error -> Query::set_retry_after_error), and that chat stays refused until it is over
  (state.Fault.chat_id, World.flood_until).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramRetryAfter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.db import Database
from infra.messages import SendText
from infra.outbox import enqueue
from jobs import review as review_jobs
from jobs.outbox import OutboxSender
from models import Assignment, Audio, Contact, OutboxMessage, OutboxStatus, Role
from models.base import utcnow
from telegram_standin import StandIn
from telegram_standin.driver import buttons, message_text
from telegram_standin.state import VOICE_REFUSALS
from tests.conftest import TOKEN
from tests.helpers import (
    cards_of,
    fill_default_form,
    fragment,
    join,
    join_as_promoter,
    label,
    pavel_with_contacts,
    seed_project,
    text,
)

# The promoter's receipt as it first goes out (its contact's id is not known here).
RECEIPT = fragment("intake-receipt", status=label("status-queued"))


# -- finding 3: a call whose answer is lost has run ------------------------------------------------------
async def test_standin_a_dropped_answer_means_the_call_ran(tg: StandIn, raw_bot: Bot) -> None:
    person = tg.user(7301, "Olga", token=TOKEN, language_code="en")
    tg.drop_answer("sendMessage")
    with pytest.raises(TelegramNetworkError):
        await raw_bot.send_message(person.id, "did it go?")
    assert [message_text(m) for m in person.bot_messages()] == [
        "did it go?"
    ]  # it did: only the answer is lost


async def test_standin_a_delayed_call_runs_after_its_caller_has_gone(tg: StandIn, raw_bot: Bot) -> None:
    person = tg.user(7302, "Olga", token=TOKEN, language_code="en")
    tg.world.method_delay = {"sendMessage": 0.5}
    call = asyncio.create_task(raw_bot.send_message(person.id, "sent before the kill"))
    await tg.wait_until(lambda: tg.world.calls_in_flight.get("sendMessage", 0) > 0)
    call.cancel()  # the caller gives up (a timeout, a kill) while Telegram holds the call
    tg.world.method_delay = {}
    await tg.wait_until(lambda: len(person.bot_messages()) == 1)
    assert message_text(person.bot_messages()[0]) == "sent before the kill"


async def test_a_review_card_whose_answer_was_lost_leaves_one_live_copy(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    """The card went out but its answer was lost: the outbox cannot know and sends it again. The copy whose
    id came back is the card (buttons, and the id the bot edits later); the other copy has no button."""
    project = await seed_project(sessions)
    rita = await join(tg, sessions, project, Role.REVIEWER, 3701, "Rita")
    _, [contact_id] = await pavel_with_contacts(
        tg, sessions, project, 2701, 1, audio_dir / "dialogue.ogg", app.settings.storage_root
    )
    tg.drop_answer("sendMessage", chat_id=rita.id)  # the card is this chat's only sendMessage now
    await review_jobs.dispatch(app.session_factory, app.i18n)
    await tg.wait_until(lambda: len(cards_of(rita)) == 1, timeout=30)  # after the outbox's 2 s back-off
    title = text("card-title", id=contact_id, project=project.name)
    copies = [m for m in rita.bot_messages() if title in message_text(m)]
    assert len(copies) == 2  # at-least-once: Telegram has both
    lost, live = copies
    assert buttons(lost) == [] and buttons(live) != []
    async with asyncio.timeout(10):  # the sender records the card just after Telegram armed it
        while (message_id := await _card_id(sessions)) is None:  # noqa: ASYNC110 - a row, not an event
            await asyncio.sleep(0.05)
    assert message_id == live["message_id"]  # later edits (expiry, submit) reach the live copy


async def _card_id(sessions: async_sessionmaker[AsyncSession]) -> int | None:
    async with sessions() as session:
        return await session.scalar(select(Assignment.message_id))


async def test_a_card_whose_arming_answer_was_lost_is_armed_once(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot
) -> None:
    """The buttons went on but that answer was lost: the next try finds them there ("not modified") and
    sends no second card."""
    person = tg.user(7303, "Rita", token=TOKEN, language_code="en")
    keyboard = {"inline_keyboard": [[{"text": "Approve", "callback_data": "x"}]]}
    async with sessions() as session, session.begin():
        await enqueue(session, person.id, SendText(text="Contact #1", reply_markup=keyboard, anchor="t:1"))
    tg.drop_answer("editMessageReplyMarkup")
    sender = OutboxSender(raw_bot, db, anchors={"t": _NoAnchor()})
    for _ in range(3):
        await sender.drain()
        async with sessions() as session, session.begin():
            await session.execute(update(OutboxMessage).values(not_before=utcnow()))
    [card] = person.bot_messages()
    assert buttons(card) and len(tg.calls("sendMessage")) == 1
    async with sessions() as session:
        [row] = list(await session.scalars(select(OutboxMessage)))
    assert row.status == OutboxStatus.SENT and row.telegram_message_id == card["message_id"]


class _NoAnchor:
    async def remember(self, session: AsyncSession, key: str, chat_id: int, message_id: int) -> None:
        return None

    async def find(self, session: AsyncSession, key: str) -> int | None:
        return None


# -- finding 4: every wording of "no voice notes" ----------------------------------------------------------
@pytest.mark.parametrize("refusal", VOICE_REFUSALS[1:])
async def test_every_wording_of_a_voice_refusal_sends_the_recording_as_a_file(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, refusal: str
) -> None:
    project = await seed_project(sessions)
    rita = await join(tg, sessions, project, Role.REVIEWER, 3702, "Rita")
    rita.forbid_voice_messages(refusal)
    _, [contact_id] = await pavel_with_contacts(
        tg, sessions, project, 2702, 1, audio_dir / "dialogue.ogg", app.settings.storage_root
    )
    await review_jobs.dispatch(app.session_factory, app.i18n)
    await tg.wait_until(lambda: len(cards_of(rita)) == 1, timeout=20)
    [as_file] = [m for m in rita.bot_messages() if "document" in m]
    assert message_text(as_file) == text("card-voice-as-file", id=contact_id)
    assert tg.world.files[as_file["document"]["file_id"]].path.read_bytes()[:4] == b"OggS"


async def test_standin_refuses_voice_in_the_chosen_wording(
    tg: StandIn, raw_bot: Bot, audio_dir: Path
) -> None:
    person = tg.user(7304, "Olga", token=TOKEN, language_code="en")
    person.forbid_voice_messages(VOICE_REFUSALS[1])
    with pytest.raises(TelegramBadRequest, match="user restricted receiving of voice note messages"):
        await raw_bot.send_voice(person.id, tg.upload(audio_dir / "dialogue.ogg"))


# -- finding 5: an audio file or a document reaches the reviewer as a voice note --------------------------
async def test_standin_resends_an_audio_file_id_as_audio(tg: StandIn, raw_bot: Bot, audio_dir: Path) -> None:
    person = tg.user(7305, "Olga", token=TOKEN, language_code="en")
    sent = await raw_bot.send_voice(person.id, tg.upload(audio_dir / "short.mp3", folder="music"))
    assert sent.voice is None and sent.audio is not None  # a music player, not a voice note
    with pytest.raises(TelegramBadRequest, match="can't use file of type Photo as VoiceNote"):
        await raw_bot.send_voice(person.id, tg.upload(audio_dir / "notes.txt", folder="photos"))


@pytest.mark.parametrize("sent_as", ["audio", "document"])
async def test_a_recording_sent_as_a_file_reaches_the_reviewer_as_a_voice_note(
    app: Runtime,
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    audio_dir: Path,
    tmp_path: Path,
    sent_as: str,
) -> None:
    project = await seed_project(sessions)
    rita = await join(
        tg,
        sessions,
        project,
        Role.REVIEWER,
        3703,
        "Rita",
    )
    promoter = await join_as_promoter(tg, sessions, project, 2703)
    mp3 = tmp_path / "dialogue.mp3"
    await asyncio.to_thread(
        subprocess.run,
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(audio_dir / "dialogue.ogg"), str(mp3)],
        check=True,
    )
    await fill_default_form(tg, promoter)
    if sent_as == "audio":
        await promoter.send_audio(mp3)
    else:
        await promoter.send_document(mp3, mime_type="audio/mpeg")
    await promoter.expect(RECEIPT)
    await app.settled()
    async with sessions() as session, session.begin():  # no voice worker here: past the analysis wait
        await session.execute(update(Contact).values(queued_at=utcnow() - dt.timedelta(hours=1)))
    await review_jobs.dispatch(app.session_factory, app.i18n)
    await tg.wait_until(lambda: len(cards_of(rita)) == 1, timeout=20)
    recordings = [m for m in rita.bot_messages() if {"voice", "audio", "document"} & m.keys()]
    assert len(recordings) == 1 and "voice" in recordings[0], recordings
    assert tg.world.files[recordings[0]["voice"]["file_id"]].path.read_bytes()[:4] == b"OggS"
    async with sessions() as session:
        [audio] = list(await session.scalars(select(Audio)))
    assert audio.telegram_file_id is None and audio.mime_type == "audio/ogg"
    assert audio.sha256 == __import__("hashlib").sha256(mp3.read_bytes()).hexdigest()  # resends still match


# -- finding 6: getFile's transient refusal ---------------------------------------------------------------
async def test_a_file_temporarily_unavailable_is_retried_before_asking_again(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project, 2704)
    await fill_default_form(tg, promoter)
    tg.file_temporarily_unavailable(times=2)
    await promoter.send_voice(audio_dir / "dialogue.ogg")
    await promoter.expect(RECEIPT, timeout=30)  # the receipt first: no error came before it
    assert len(tg.calls("getFile")) == 3
    asking_again = [text(key) for key in ("error-generic", "inbox-given-up")]
    assert not [m for m in promoter.bot_messages() if any(t in message_text(m) for t in asking_again)]


async def test_standin_getfile_temporarily_unavailable(tg: StandIn, raw_bot: Bot, audio_dir: Path) -> None:
    file_id = tg.upload(audio_dir / "dialogue.ogg")
    tg.file_temporarily_unavailable()
    with pytest.raises(TelegramBadRequest, match="wrong file_id or the file is temporarily unavailable"):
        await raw_bot.get_file(file_id)
    assert (await raw_bot.get_file(file_id)).file_path  # the same id works again


# -- finding 8: flood waits are per chat -------------------------------------------------------------------
async def test_standin_flood_wait_is_per_chat(tg: StandIn, raw_bot: Bot) -> None:
    group = tg.group(-7306, "Managers", token=TOKEN)
    person = tg.user(7306, "Olga", token=TOKEN, language_code="en")
    tg.flood_chat(group.chat_id, retry_after=30)
    for _ in range(2):  # refused, and refused again while the wait lasts
        with pytest.raises(TelegramRetryAfter) as refused:
            await raw_bot.send_message(group.chat_id, "to the group")
        assert 1 <= refused.value.retry_after <= 30
    await raw_bot.send_message(person.id, "to a person")  # another chat is not held up
    assert [message_text(m) for m in person.bot_messages()] == ["to a person"]


async def test_one_groups_flood_wait_does_not_hold_private_messages(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    group = tg.group(-7307, "Managers", token=TOKEN)
    person = tg.user(7307, "Olga", token=TOKEN, language_code="en")
    tg.flood_chat(group.chat_id, retry_after=120)
    async with sessions() as session, session.begin():
        await enqueue(session, group.chat_id, SendText(text="alert for the group"))
    await tg.wait_until(lambda: len(tg.calls("sendMessage")) >= 1, timeout=20)  # the group got its 429
    async with sessions() as session, session.begin():
        await enqueue(session, person.id, SendText(text="your receipt"))
    await person.expect("your receipt", timeout=20)  # before: waited out the group's 120 s
    async with sessions() as session:
        waiting = await session.scalar(select(OutboxMessage).where(OutboxMessage.chat_id == group.chat_id))
    assert waiting is not None and waiting.status == OutboxStatus.PENDING
    assert waiting.not_before > utcnow() + dt.timedelta(seconds=60)  # the group still waits its turn
    assert group.bot_messages() == []
