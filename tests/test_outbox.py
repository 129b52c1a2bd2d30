"""The outbox under Telegram faults: nothing is ever dropped for a transient error, per-chat order holds,
a group upgraded to a supergroup is followed, and every failure ends in a decided state (never `sending`).

Error shapes follow the real server: a migrated group answers 400 "Bad Request: group chat was upgraded to
a supergroup chat" with parameters.migrate_to_chat_id (Bot API ResponseParameters; tdlib/telegram-bot-api
Client.cpp fail_query_with_error builds the "Bad Request: ..." texts); a front-end proxy in front of the
Bot API can answer a 502 with an HTML page instead of JSON.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import shutil
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from aiogram import Bot
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.db import Database
from infra.messages import (
    EditText,
    OutboxMessageBody,
    SendChart,
    SendSurveyCode,
    SendText,
    SendVoice,
    anchor_of,
    parse_stored,
)
from infra.outbox import enqueue
from infra.storage import LocalAudioStore
from jobs import housekeeping
from jobs.outbox import STUCK_AFTER, OutboxSender
from models import OutboxMessage, OutboxStatus, Project
from models.base import utcnow
from services.surveys import qr_png
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import message_text
from telegram_ui import notify
from tests.conftest import TOKEN
from tests.helpers import seed_project


async def _drain_ignoring_backoff(
    sender: OutboxSender, sessions: async_sessionmaker[AsyncSession], rounds: int
) -> None:
    for _ in range(rounds):
        await sender.drain()
        async with sessions() as session, session.begin():
            await session.execute(update(OutboxMessage).values(not_before=utcnow()))


async def _queued(
    sessions: async_sessionmaker[AsyncSession], chat_id: int, *bodies: OutboxMessageBody
) -> None:
    """`bodies` queued for one chat in one transaction, in order, as a handler queues its answers."""
    async with sessions() as session, session.begin():
        for body in bodies:
            await enqueue(session, chat_id, body)


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def test_a_long_outage_drops_nothing_and_keeps_chat_order(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot
) -> None:
    person = tg.user(701, "Pavel", token=TOKEN, language_code="en")
    await _queued(sessions, person.id, SendText(text="first"), SendText(text="second"))
    outage = STUCK_AFTER + 4  # well past the point where the old sender gave a message up for ever
    tg.fail_next("sendMessage", status=502, times=outage)
    sender = OutboxSender(raw_bot, db)
    await _drain_ignoring_backoff(sender, sessions, outage + 3)

    assert [message_text(m) for m in person.bot_messages()] == ["first", "second"]
    first, second = await _rows(sessions)
    assert (first.status, first.attempts) == (OutboxStatus.SENT, outage + 1)
    assert (second.status, second.attempts) == (OutboxStatus.SENT, 1)  # never tried while the first waited


async def test_html_error_page_is_retried_not_left_sending(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot
) -> None:
    person = tg.user(702, "Pavel", token=TOKEN, language_code="en")
    await _queued(sessions, person.id, SendText(text="after the proxy hiccup"))
    tg.fail_next("sendMessage", status=502, html=True, times=2)
    await _drain_ignoring_backoff(OutboxSender(raw_bot, db), sessions, 4)
    assert [message_text(m) for m in person.bot_messages()] == ["after the proxy hiccup"]
    [row] = await _rows(sessions)
    assert row.status == OutboxStatus.SENT and row.attempts == 3


async def test_group_upgraded_to_supergroup_is_followed(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot
) -> None:
    old, new = -500, -1000000000500
    project = await seed_project(sessions, managers_chat_id=old)
    tg.group(old, "Managers", token=TOKEN)
    supergroup = tg.group(new, "Managers", token=TOKEN)
    await _queued(sessions, old, SendText(text="alert one"), SendText(text="alert two"))
    tg.fail_next("sendMessage", status=400, migrate_to_chat_id=new)
    await _drain_ignoring_backoff(OutboxSender(raw_bot, db), sessions, 3)

    assert [message_text(m) for m in supergroup.bot_messages()] == ["alert one", "alert two"]
    async with sessions() as session:
        moved = await session.get(Project, project.id)
        assert moved is not None and moved.managers_chat_id == new
    assert {(r.chat_id, r.status) for r in await _rows(sessions)} == {(new, OutboxStatus.SENT)}


async def test_unsendable_message_ends_failed_and_the_chat_goes_on(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot, tmp_path: Path
) -> None:
    person = tg.user(703, "Pavel", token=TOKEN, language_code="en")
    store = LocalAudioStore(tmp_path / "blobs")
    # A chart whose blob is not in the store, then a text.
    await _queued(sessions, person.id, SendChart(blob_key="ab/cd/gone.png"), SendText(text="next"))
    await _drain_ignoring_backoff(OutboxSender(raw_bot, db, audio_store=store), sessions, 2)
    photo, text = await _rows(sessions)
    assert photo.status == OutboxStatus.FAILED and "gone.png" in (photo.last_error or "")
    assert text.status == OutboxStatus.SENT
    assert [message_text(m) for m in person.bot_messages()] == ["next"]


async def test_a_chart_queued_on_one_machine_is_sent_from_the_store_by_another(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot, tmp_path: Path
) -> None:
    """A queued chart is a key in the blob store (a bucket every machine shares in production), not a file
    of the machine that drew it: with that machine's files gone, a leader elsewhere still sends it. A row
    queued by the previous version (a machine-local `path`) shows what used to happen: it fails."""
    person = tg.user(706, "Maria", token=TOKEN, language_code="en")
    bucket = tmp_path / "bucket"  # the shared store
    drawing_machine = tmp_path / "machine-a"
    drawing_machine.mkdir()
    png = qr_png("a chart")  # any PNG
    (drawing_machine / "chart.png").write_bytes(png)
    async with sessions() as session, session.begin():
        key = await asyncio.to_thread(LocalAudioStore(bucket).put, png, ".png")
        await notify.queue_digest(
            session, person.id, 1, dt.date(2026, 11, 30), chart_key=key, text="digest", keyboard=_keyboard()
        )
        session.add(_legacy_row(person.id, "sendPhoto", {"path": str(drawing_machine / "chart.png")}))
    shutil.rmtree(drawing_machine)  # the machine that drew it is gone, with its files
    other_machine = OutboxSender(raw_bot, db, audio_store=LocalAudioStore(bucket))
    await _drain_ignoring_backoff(other_machine, sessions, 3)
    chart, text, legacy = await _rows(sessions)
    assert (chart.status, text.status) == (OutboxStatus.SENT, OutboxStatus.SENT)
    assert chart.payload == {"kind": "chart", "blob_key": key}
    sent = person.bot_messages()
    assert "photo" in sent[0] and message_text(sent[1]) == "digest" and len(sent) == 2
    assert legacy.status == OutboxStatus.FAILED and "chart.png" in (legacy.last_error or "")


def _keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Open", callback_data="x")]])


def _legacy_row(
    chat_id: int, method: str, payload: dict[str, object], key: str | None = None
) -> OutboxMessage:
    """A row as the version before typed messages stored it: a Bot API method and a free payload dict."""
    now = utcnow()
    return OutboxMessage(
        chat_id=chat_id,
        method=method,
        payload=payload,
        dedupe_key=key,
        status=OutboxStatus.PENDING,
        attempts=0,
        not_before=now,
        created_at=now,
        updated_at=now,
    )


async def test_rows_queued_before_messages_were_typed_still_send(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot, tmp_path: Path
) -> None:
    """An upgrade finds rows of the previous version waiting: each kind of them is still sent."""
    person = tg.user(707, "Pavel", token=TOKEN, language_code="en")
    chart = tmp_path / "chart.png"
    chart.write_bytes(qr_png("a chart"))
    markup = _keyboard().model_dump(exclude_none=True)
    async with sessions() as session, session.begin():
        for row in (
            _legacy_row(person.id, "sendMessage", {"text": "receipt"}, "receipt:1"),
            _legacy_row(person.id, "sendPhoto", {"qr": "https://t.me/bot?start=s_x", "caption": "scan me"}),
            _legacy_row(person.id, "sendPhoto", {"path": str(chart)}),
            _legacy_row(person.id, "sendMessage", {"text": "alert", "reply_markup": markup}),
            _legacy_row(person.id, "editMessageText", {"text": "receipt, reviewed", "edit_of": "receipt:1"}),
        ):
            session.add(row)
    await _drain_ignoring_backoff(OutboxSender(raw_bot, db), sessions, 6)
    assert {row.status for row in await _rows(sessions)} == {OutboxStatus.SENT}
    receipt, code, photo, alert = person.bot_messages()
    assert message_text(receipt) == "receipt, reviewed"
    assert "photo" in code and message_text(code) == "scan me" and "photo" in photo
    assert message_text(alert) == "alert"


def test_stored_rows_of_the_previous_version_parse_into_the_messages() -> None:
    """`card_of_assignment` was the review card's anchor: such a card is still armed after send and its id
    remembered on the assignment; an edit of it still finds it there."""
    markup = _keyboard().model_dump(exclude_none=True)
    card = parse_stored("sendMessage", {"text": "card", "reply_markup": markup, "card_of_assignment": 5})
    assert card == SendText(text="card", reply_markup=markup, anchor="card:5") and card.arms_buttons
    assert anchor_of(card) == ("card", "5")
    closed = parse_stored("editMessageText", {"text": "expired", "card_of_assignment": 5})
    assert closed == EditText(text="expired", anchor="card:5")
    armed = parse_stored("sendMessage", {"text": "t", "reply_markup": markup, "buttons_after_send": True})
    assert isinstance(armed, SendText) and armed.arms_buttons
    voice = parse_stored("sendVoice", {"voice": "f1", "audio_key": "ab/cd/x.ogg", "file_caption": "as file"})
    assert voice == SendVoice(voice="f1", audio_key="ab/cd/x.ogg", file_caption="as file")
    assert parse_stored("sendPhoto", {"path": "/tmp/c.png"}) == SendChart(path="/tmp/c.png")
    assert parse_stored("sendPhoto", {"qr": "link", "caption": "c"}) == SendSurveyCode(
        link="link", caption="c"
    )
    with pytest.raises(ValueError, match="unsupported"):
        parse_stored("sendSticker", {})


async def test_sender_survives_a_database_down_at_start_up(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot
) -> None:
    """The sender's first steps fail (database unreachable): it keeps running and delivers once it is back."""
    person = tg.user(704, "Pavel", token=TOKEN, language_code="en")
    await _queued(sessions, person.id, SendText(text="after the outage"))
    failures = {"left": 3}

    def down() -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionRefusedError("database is down")

    def flaky_sessions() -> AsyncSession:
        down()
        return sessions()

    class FlakyDatabase(Database):
        def read_session(self) -> AbstractAsyncContextManager[AsyncSession]:
            down()
            return super().read_session()

    sender = OutboxSender(raw_bot, FlakyDatabase(db.writer, flaky_sessions))  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop, idle=0.05))
    try:
        await person.expect("after the outage", timeout=20)
    finally:
        stop.set()
        await task
    assert failures["left"] == 0


async def test_the_running_outbox_owns_its_back_off_alone(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The bot's interactive retries are not stacked under the outbox: one 502 is one failed attempt that
    the outbox records and backs off from, not five calls hidden inside one attempt."""
    person = tg.user(703, "Pavel", token=TOKEN, language_code="en")
    before = len(tg.calls("sendMessage"))
    tg.fail_next("sendMessage", status=502, times=1)
    await _queued(sessions, person.id, SendText(text="once the server is back"))
    await person.expect("once the server is back", timeout=20)  # the running sender: 2 s of back-off
    assert [message_text(m) for m in person.bot_messages()] == ["once the server is back"]
    async with asyncio.timeout(10):  # the sender records the send just after Telegram accepted it
        while (row := (await _rows(sessions))[0]).status != OutboxStatus.SENT:  # noqa: ASYNC110 - a row
            await asyncio.sleep(0.05)
    assert row.attempts == 2
    assert len(tg.calls("sendMessage")) - before == 2  # the failed call and the one that went through


async def test_telegram_failing_at_random_delivers_everything_in_order_within_the_limits(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A third of all sends answered with a 429, a 500, a proxy's 502 page or a dropped connection (a
    timeout), for the whole run: every
    message still arrives, in order per chat, and no chat gets two sends within a second, nor the bot more
    than 30 a second (counting the failed calls too: Telegram counts them).

    A dropped connection loses the answer, not the call (issue #27: telegram-bot-api runs a query as soon
    as it has read it), so the outbox, which cannot know, sends that message again: plain messages are
    at-least-once. The copy follows its original at once (the chat's next message waits behind it), and
    there is one extra copy per dropped call, no more."""
    people = [tg.user(7100 + n, f"Person {n}", token=TOKEN, language_code="en") for n in range(6)]
    tg.fail_at_random(0.33)
    started = len(tg.world.call_times)
    async with sessions() as session, session.begin():
        for k in range(4):
            for person in people:
                await enqueue(session, person.id, SendText(text=f"message {k}"))
    expected = [f"message {k}" for k in range(4)]

    def delivered(person: UserClient) -> list[str]:  # each run of copies counted once
        return [text for text, _ in itertools.groupby(message_text(m) for m in person.bot_messages())]

    try:
        await tg.wait_until(lambda: all(delivered(p) == expected for p in people), timeout=120)
    finally:
        tg.fail_at_random(0)
    # A message whose answer was lost may still be waiting out its back-off to go again: let it.
    async with asyncio.timeout(120):
        while any(r.status != OutboxStatus.SENT for r in await _rows(sessions)):  # noqa: ASYNC110 - rows
            await asyncio.sleep(0.1)
    for person in people:
        assert delivered(person) == expected
    copies = sum(len(p.bot_messages()) for p in people) - 4 * len(people)
    assert copies == tg.world.random_faults_seen.get(0, 0)  # one per call whose answer was lost
    sends = [(at, chat) for at, method, chat in tg.world.call_times[started:] if method == "sendMessage"]
    assert len(sends) > 24  # some failed and were tried again
    assert all(tg.world.random_faults_seen.get(status) for status in (429, 500, 502, 0))  # each kind hit
    for person in people:
        times = [at for at, chat in sends if chat == str(person.id)]
        assert all(b - a >= 0.95 for a, b in itertools.pairwise(times)), times
    assert max(sum(1 for other, _ in sends if at <= other < at + 1.0) for at, _ in sends) <= 30


async def test_a_chart_leaves_the_store_once_no_message_still_to_be_sent_carries_it(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot, tmp_path: Path
) -> None:
    """A digest's chart goes to each manager's chat under one key: sent to one chat, it stays in the store
    while the other's message is pending; once that one is done too (here refused: given up), it goes."""
    first = tg.user(707, "Maria", token=TOKEN, language_code="en")
    second = tg.user(708, "Nick", token=TOKEN, language_code="en")
    store = LocalAudioStore(tmp_path / "bucket")
    key = await asyncio.to_thread(store.put, qr_png("a chart"), "-1-2026-11-30.png")
    later = utcnow() + dt.timedelta(hours=1)
    async with sessions() as session, session.begin():
        await enqueue(session, first.id, SendChart(blob_key=key))
        await enqueue(session, second.id, SendChart(blob_key=key), not_before=later)
    sender = OutboxSender(raw_bot, db, audio_store=store)
    assert await sender.drain() == 1
    sent, waiting = await _rows(sessions)
    assert (sent.status, waiting.status) == (OutboxStatus.SENT, OutboxStatus.PENDING)
    assert "photo" in first.bot_messages()[0]
    assert store.exists(key)  # the pending message still carries it
    tg.fail_next("sendPhoto", status=403, description="Forbidden: bot was blocked by the user")
    async with sessions() as session, session.begin():  # the second chat's turn
        await session.execute(update(OutboxMessage).values(not_before=utcnow()))
    assert await sender.drain() == 0
    assert (await _rows(sessions))[1].status == OutboxStatus.FAILED
    assert not store.exists(key)


async def test_the_daily_sweep_removes_old_done_charts_and_keeps_pending_ones(
    db: Database, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """housekeeping.purge_old_charts, the safety net under the sender's purge: a chart queued longer ago
    than the retention whose messages are all done goes; a recent one stays; one that a pending message
    carries stays however old, even when an older message with the same key was sent long ago."""
    store = LocalAudioStore(tmp_path / "bucket")
    now = utcnow()
    old, recent = now - dt.timedelta(days=10), now - dt.timedelta(days=1)
    keys = {
        name: await asyncio.to_thread(store.put, qr_png(name), f"-1-{name}.png")
        for name in ("sent", "failed", "cancelled", "recent", "pending", "shared", "sending")
    }
    rows = [
        ("sent", OutboxStatus.SENT, old),
        ("failed", OutboxStatus.FAILED, old),
        ("cancelled", OutboxStatus.CANCELLED, old),
        ("recent", OutboxStatus.SENT, recent),
        ("pending", OutboxStatus.PENDING, old),
        ("shared", OutboxStatus.SENT, old),
        ("shared", OutboxStatus.PENDING, recent),
        ("sending", OutboxStatus.SENDING, old),
    ]
    async with sessions() as session, session.begin():
        for chat, (name, status, created) in enumerate(rows, start=1):
            row = _legacy_row(chat, "sendPhoto", {"kind": "chart", "blob_key": keys[name]})
            row.status, row.created_at, row.updated_at = status, created, created
            session.add(row)
            session.add(_legacy_row(chat, "sendMessage", {"kind": "text", "text": "not a chart"}))
    removed = await housekeeping.purge_old_charts(db, store, retention=dt.timedelta(days=7), now=now)
    assert removed == 3
    assert {name for name, key in keys.items() if store.exists(key)} == {
        "recent",
        "pending",
        "shared",
        "sending",
    }
    assert await housekeeping.purge_old_charts(db, store, retention=dt.timedelta(days=7), now=now) == 0
