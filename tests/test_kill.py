"""kill -9 of a real bot process mid-review, mid-digest, and of the scheduler leader mid-dispatch (issue #13).

Each kill lands while a call to Telegram is waiting (the stand-in holds it, `method_delay`). As on the real
server (telegram-bot-api HttpConnection::handle hands a query over as soon as it is read; issue #27), the
killed process's call still runs after the delay: its answer is lost, not the call. After a restart (or a
take-over) nothing is lost; what is exactly-once stays so (a review, a digest day, one live card per
assignment), and what is at-least-once (a chart, a voice note) may arrive a second time.
docs/architecture.md, "Delivery guarantees", says which is which.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import Database
from models import (
    Assignment,
    Contact,
    ContactStatus,
    DigestLog,
    OutboxMessage,
    OutboxStatus,
    Project,
    Review,
    Role,
)
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.conftest import TOKEN, USE_POSTGRES
from tests.helpers import (
    BotProcess,
    bot_env,
    cards_of,
    count_rows,
    criterion,
    fragment,
    free_port,
    join,
    joined_as,
    label,
    seed_contacts,
    seed_project,
    text,
    webhook_env,
)

QUICK = {"OUTBOX_STALE_SECONDS": "2"}  # a message left `sending` by the dead process goes again soon


def _in_flight(tg: StandIn, method: str) -> Callable[[], bool]:
    return lambda: tg.world.calls_in_flight.get(method, 0) > 0


def _two_webhook_bots(
    tg: StandIn, url: str, tmp_path: Path, redis_url: str | None
) -> tuple[BotProcess, BotProcess]:
    """Two bot processes electing a leader, each serving its own webhook (the one started last receives)."""
    extra = {**QUICK, "LEADER_ELECTION": "true", "LEADER_POLL_SECONDS": "0.5"}
    first, second = (
        BotProcess(
            bot_env(tg, url, tmp_path, redis_url, **extra, **webhook_env(free_port())),
            tg,
            tmp_path / f"{name}.log",
            command="webhook",
        )
        for name in ("first", "second")
    )
    return first, second


async def test_kill_9_mid_review_keeps_the_review_once(
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    migrated_url: str,
    redis_url: str | None,
    tmp_path: Path,
    audio_dir: Path,
) -> None:
    """The reviewer presses Approve; the process dies while it answers. The review was committed before
    the answer (bot/reply_after_commit.py): it is there once, pressing again says the card was submitted, and
    the promoter's feedback is queued once."""
    bot = BotProcess(bot_env(tg, migrated_url, tmp_path, redis_url, **QUICK), tg, tmp_path / "bot.log")
    await bot.start()
    try:
        project = await seed_project(sessions)
        rita = await join(tg, sessions, project, Role.REVIEWER, 3101, "Rita")
        await join(tg, sessions, project, Role.PROMOTER, 2101, "Pavel")
        [contact_id] = await seed_contacts(
            sessions, tg, project, 2101, 1, audio_dir / "dialogue.ogg", tmp_path / "audio"
        )
        await tg.wait_until(lambda: len(cards_of(rita)) == 1, timeout=40)  # the dispatch job, every 10 s
        card = cards_of(rita)[0]
        for key in ("greeting", "presentation", "offer", "politeness", "real_customer"):
            before = message_text(rita.last_state(card)) + repr(rita.last_state(card).get("reply_markup"))
            await rita.press(rita.last_state(card), criterion(key))  # the mark's button, by its name
            await tg.wait_until(
                lambda before=before: (
                    message_text(rita.last_state(card)) + repr(rita.last_state(card).get("reply_markup"))
                    != before
                ),
                timeout=20,
            )
        tg.world.method_delay = {"answerCallbackQuery": 30.0, "editMessageText": 30.0}
        await rita.press(rita.last_state(card), label("verdict-approve"))
        await tg.wait_until(
            lambda: _in_flight(tg, "answerCallbackQuery")() or _in_flight(tg, "editMessageText")(), 20
        )
        await bot.kill()
        tg.world.method_delay = {}

        assert await count_rows(sessions, Review, Review.contact_id == contact_id) == 1
        await bot.start()
        await rita.press(rita.last_state(card), label("verdict-approve"))
        answer = await rita.callback_answer(rita.last_query)
        # Done: the first press counted, and the press is told so (issue #27 item 15: "already rated", where
        # it used to read "This card is closed (done, returned or timed out)").
        assert answer.get("text", "") == label("review-already-submitted")
        await asyncio.sleep(1.0)  # time for a wrongly repeated review to be written
        assert await count_rows(sessions, Review, Review.contact_id == contact_id) == 1
        async with sessions() as session:
            contact = await session.get(Contact, contact_id)
            assert contact is not None and contact.status == ContactStatus.REVIEWED
        assert await count_rows(sessions, OutboxMessage, OutboxMessage.dedupe_key.like("feedback:%")) == 1
    finally:
        await bot.stop()


async def test_kill_9_mid_digest_sends_it_once_after_restart(
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    migrated_url: str,
    redis_url: str | None,
    tmp_path: Path,
) -> None:
    """The digest job claims the day and queues the chart and the text; the process dies while the chart
    is being sent. The dead process's call still runs (its answer is lost), and the restarted outbox,
    which cannot know, sends the chart again: the chart is at-least-once. The day is not built again and
    the text, which was not in flight, reaches the manager once."""
    bot = BotProcess(bot_env(tg, migrated_url, tmp_path, redis_url, **QUICK), tg, tmp_path / "bot.log")
    project = await seed_project(sessions)
    async with sessions() as session, session.begin():  # due since midnight: the job sends at start-up
        await session.execute(
            update(Project).where(Project.id == project.id).values(timezone="UTC", digest_time=dt.time(0, 0))
        )
    await bot.start()
    try:
        maria = await join(tg, sessions, project, Role.MANAGER, 3201, "Maria")
        tg.world.method_delay = {"sendPhoto": 5.0}
        await bot.kill()  # restarted with the manager known: the digest goes at start-up, into the delay
        await bot.start()
        await tg.wait_until(_in_flight(tg, "sendPhoto"), 60)
        await bot.kill()
        tg.world.method_delay = {}
        # The killed call runs all the same: Telegram had it.
        await tg.wait_until(lambda: [m for m in maria.bot_messages() if "photo" in m], 30)

        await bot.start()
        title = fragment("digest-title", project=project.name)  # of the day before: its date aside
        await tg.wait_until(lambda: any(title in message_text(m) for m in maria.bot_messages()), 60)
        await asyncio.sleep(3.0)  # past OUTBOX_STALE_SECONDS: a third copy would have gone by now
        assert len([m for m in maria.bot_messages() if "photo" in m]) == 2  # at-least-once: sent again
        assert len([m for m in maria.bot_messages() if title in message_text(m)]) == 1
        assert await count_rows(sessions, DigestLog) == 1  # the day was built once
        assert await count_rows(sessions, OutboxMessage, OutboxMessage.status == OutboxStatus.SENDING) == 0
    finally:
        await bot.stop()


@pytest.mark.skipif(not USE_POSTGRES, reason="several bot processes share one PostgreSQL database")
async def test_kill_9_of_the_leader_mid_dispatch_delivers_every_card_once(
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    migrated_url: str,
    redis_url: str | None,
    tmp_path: Path,
    audio_dir: Path,
) -> None:
    """Two bot processes in webhook mode (the second's webhook replaces the first's, as a redeploy does);
    the leader dispatches cards and dies while sending one. The other takes over the scheduler and the
    outbox: every assignment has exactly one live card (with buttons, the one the bot edits), and the
    voice note that was in flight, at-least-once, may arrive twice (the dead leader's call ran)."""
    first, second = _two_webhook_bots(tg, migrated_url, tmp_path, redis_url)
    await first.start()
    try:
        project = await seed_project(sessions)
        reviewers = [await join(tg, sessions, project, Role.REVIEWER, 3300 + i, f"Rev{i}") for i in range(2)]
        await join(tg, sessions, project, Role.PROMOTER, 2301, "Pavel")
        await second.start()  # the first leads (it started alone); the second waits
        tg.world.method_delay = {"sendVoice": 5.0}
        await seed_contacts(sessions, tg, project, 2301, 6, audio_dir / "dialogue.ogg", tmp_path / "audio")
        await tg.wait_until(_in_flight(tg, "sendVoice"), 40)
        await first.kill()
        tg.world.method_delay = {}
        in_flight = tg.world.calls_in_flight["sendVoice"]  # one per reviewer's chat at most

        await tg.wait_until(lambda: all(len(cards_of(r)) == 3 for r in reviewers), timeout=60)
        await tg.wait_until(lambda: not _in_flight(tg, "sendVoice")(), 30)  # the dead leader's call ran
        await asyncio.sleep(3.0)  # past OUTBOX_STALE_SECONDS: another copy would have gone by now
        voices = [m for r in reviewers for m in r.bot_messages() if "voice" in m]
        assert len(voices) == 6 + in_flight  # six recordings, each one in flight at the kill twice
        for reviewer in reviewers:
            assert len(cards_of(reviewer)) == 3  # exactly one live card per assignment
        async with sessions() as session:
            cards = list(await session.scalars(select(Assignment.message_id)))
        live = {m["message_id"] for r in reviewers for m in cards_of(r)}
        assert len(cards) == 6 and None not in cards and set(cards) <= live
    finally:
        await first.stop()
        await second.stop()


async def test_a_sender_restarted_at_once_resends_what_the_dead_one_left(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], migrated_url: str, tmp_path: Path
) -> None:
    """A message left `sending` by a process that was restarted within OUTBOX_STALE_SECONDS used to stay
    `sending` for good (the sender looked for stale rows only at start). Now it goes once it is stale."""
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession

    from infra.messages import SendText
    from infra.outbox import enqueue
    from jobs.outbox import OutboxSender

    person = tg.user(4401, "Olga", token=TOKEN, language_code="en")
    async with sessions() as session, session.begin():
        assert await enqueue(session, person.id, SendText(text="left behind"))
        await session.execute(update(OutboxMessage).values(status=OutboxStatus.SENDING))
    bot = Bot(TOKEN, session=AiohttpSession(api=tg.api_server))
    sender = OutboxSender(bot, db, stale_after=dt.timedelta(seconds=1))
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop, idle=0.1))
    try:
        await asyncio.sleep(0.3)
        assert person.bot_messages() == []  # still fresh: it may be in flight in a live process
        await tg.wait_until(lambda: len(person.bot_messages()) == 1, 10)
        await asyncio.sleep(1.5)  # sent once, not again
    finally:
        stop.set()
        await task
        await bot.session.close()
    assert [message_text(m) for m in person.bot_messages()] == ["left behind"]


@pytest.mark.skipif(not USE_POSTGRES, reason="several bot processes share one PostgreSQL database")
async def test_an_update_redelivered_to_another_process_is_handled_once(
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    migrated_url: str,
    redis_url: str | None,
    tmp_path: Path,
) -> None:
    """The first process handled a join; Telegram delivers the same update again, now to the second
    process (the first's answer was lost, a redeploy moved the webhook): it is recognised and skipped."""
    from tests.helpers import invite_uses, memberships_of, seed_invite

    first, second = _two_webhook_bots(tg, migrated_url, tmp_path, redis_url)
    await first.start()
    try:
        project = await seed_project(sessions)
        invite = await seed_invite(sessions, project.id, Role.PROMOTER, max_uses=5)
        pavel = tg.user(2401, "Pavel", token=TOKEN, language_code="en")
        update = await pavel.send_command("start", f"inv_{invite.code}")
        await pavel.expect(joined_as(project, Role.PROMOTER), 20)
        enrol = text("enrol-prompt", phrase=label("enrol-phrase"))
        await pavel.expect(enrol, 20)  # the enrolment prompt follows joining
        await second.start()  # the webhook now points at the second process
        tg.redeliver(TOKEN, update)
        later = await pavel.send_command("help")  # handled after the redelivered copy: a marker in time
        await pavel.expect(f"{text('help-common')}\n\n{text('help-promoter')}", 20)
        assert later["update_id"] > update["update_id"]
        assert sum(message_text(m) == joined_as(project, Role.PROMOTER) for m in pavel.bot_messages()) == 1
        assert await invite_uses(sessions, invite.id) == 1
        assert len(await memberships_of(sessions, 2401)) == 1
    finally:
        await first.stop()
        await second.stop()
