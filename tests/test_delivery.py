"""Delivery guarantees: redelivered updates are processed once, flood limits and 5xx are waited out,
and a failure mid-handler rolls back everything it did."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.settings import Settings
from models import ProcessedUpdate, Role, User
from sandbox.harness import running_bot
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.conftest import TOKEN
from tests.helpers import (
    invite_uses,
    joined_as,
    label,
    memberships_of,
    seed_invite,
    seed_project,
    text,
)

HELP = text("help-common")  # /help to someone with no role: the common part alone


async def _processed_count(sessions: async_sessionmaker[AsyncSession], update_id: int) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(ProcessedUpdate)
                .where(ProcessedUpdate.update_id == update_id)
            )
            or 0
        )


async def test_same_update_twice_is_processed_once(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    invite = await seed_invite(sessions, project.id, max_uses=5)
    pavel = tg.user(601, "Pavel", token=TOKEN, language_code="en")

    update = await pavel.send_command("start", f"inv_{invite.code}")
    await pavel.next_message()
    tg.redeliver(TOKEN, update)
    # A later, different update proves the redelivered one has been consumed by then.
    await pavel.send_command("help")
    await pavel.skip_to(HELP)
    await app.settled()

    # One answer to the invite, then the enrolment prompt and the help for a promoter: nothing in between
    # (a second answer, "You are already promoter", would be the redelivery handled again).
    enrol = text("enrol-prompt", phrase=label("enrol-phrase"))
    assert [message_text(m) for m in pavel.bot_messages()] == [
        joined_as(project, Role.PROMOTER),
        enrol,
        f"{HELP}\n\n{text('help-promoter')}",
    ]
    assert await invite_uses(sessions, invite.id) == 1
    assert await _processed_count(sessions, update["update_id"]) == 1


async def test_flood_wait_is_waited_out_and_message_arrives(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    pavel = tg.user(602, "Pavel", token=TOKEN, language_code="en")
    tg.fail_next("sendMessage", status=429, retry_after=1)
    loop = asyncio.get_running_loop()
    started = loop.time()

    await pavel.send_command("help")
    reply = await pavel.next_message(timeout=15)

    assert message_text(reply) == HELP
    assert loop.time() - started >= 1.0  # the retry_after was honoured, not ignored
    assert len(tg.calls("sendMessage")) == 2  # the refused attempt and the delivered one


async def test_server_errors_are_retried(app: Runtime, tg: StandIn) -> None:
    pavel = tg.user(603, "Pavel", token=TOKEN, language_code="en")
    tg.fail_next("sendMessage", status=502, times=2)
    await pavel.send_command("help")
    assert message_text(await pavel.next_message(timeout=15)) == HELP
    assert len(tg.calls("sendMessage")) == 3


async def test_failure_mid_handler_loses_nothing_and_retry_works(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The invite is used, then the reply fails for good. The join committed before the reply
    (bot/reply_after_commit.py): it stands, once, and the person is told it was kept, not that it was lost."""
    project = await seed_project(sessions)
    invite = await seed_invite(sessions, project.id, max_uses=1)
    pavel = tg.user(604, "Pavel", token=TOKEN, language_code="en")
    tg.fail_next("sendMessage", status=400, description="Bad Request: something unexpected")

    update = await pavel.send_command("start", f"inv_{invite.code}")
    apology = await pavel.next_message()

    assert message_text(apology) == text("error-after-save")  # kept, not lost
    await app.settled()
    assert len(await memberships_of(sessions, 604)) == 1
    assert await invite_uses(sessions, invite.id) == 1
    assert await _processed_count(sessions, update["update_id"]) == 1

    await pavel.send_command("start", f"inv_{invite.code}")
    already = text("invite-already", role=label("role-promoter"), project=project.name)
    assert message_text(await pavel.next_message()) == already
    await app.settled()
    assert await invite_uses(sessions, invite.id) == 1


async def test_a_failed_reply_with_nothing_written_is_not_called_saved(app: Runtime, tg: StandIn) -> None:
    """/help writes nothing but the update's own claim: when its reply fails, the commit before the reply
    kept no input of the person's, and the apology must not say that it did."""
    pavel = tg.user(608, "Pavel", token=TOKEN, language_code="en")
    tg.fail_next("sendMessage", status=400, description="Bad Request: something unexpected")
    await pavel.send_command("help")
    apology = message_text(await pavel.next_message())
    assert apology == text("error-generic")  # not saved: send it again


async def test_failure_before_anything_is_saved_says_so(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that fails before its first reply leaves nothing: the person is told to send it again."""
    from handlers import common

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the invite service broke")

    project = await seed_project(sessions)
    invite = await seed_invite(sessions, project.id, max_uses=1)
    monkeypatch.setattr(common, "accept_invite", broken)
    pavel = tg.user(607, "Pavel", token=TOKEN, language_code="en")
    update = await pavel.send_command("start", f"inv_{invite.code}")
    assert message_text(await pavel.next_message()) == text("error-generic")
    await app.settled()
    assert await memberships_of(sessions, 607) == []
    assert await invite_uses(sessions, invite.id) == 0
    assert await _processed_count(sessions, update["update_id"]) == 0


async def test_flooding_user_is_told_once(tg: StandIn, settings: Settings) -> None:
    strict = settings.model_copy(update={"throttle_rate_per_second": 0.001, "throttle_burst": 2})
    async with running_bot(strict, start_scheduler=False):
        pavel = tg.user(605, "Pavel", token=TOKEN, language_code="en")
        for _ in range(6):
            await pavel.send_command("help")
        await tg.wait_until(lambda: len(pavel.bot_messages()) >= 3)
        await asyncio.sleep(0.3)  # time for any wrongly answered extra message to show up
    texts = [message_text(m) for m in pavel.bot_messages()]
    assert sorted(texts) == sorted([HELP, HELP, text("throttled")])  # two answers, told once, nothing else


async def test_update_is_not_acknowledged_until_stored(
    app: Runtime, tg: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses the first store: Telegram is not told the update arrived (the next getUpdates
    keeps the old offset), so it is fetched again and answered once the database is back."""
    from bot import inbox as inbox_module
    from infra import inbox as inbox_service

    real_store = inbox_service.store
    refusals: list[int] = []
    bot = tg.bot(TOKEN)

    async def refusing_store(session: AsyncSession, bot_id: int, updates: list[dict[str, object]]) -> None:
        if not refusals:
            refusals.append(int(str(updates[0]["update_id"])))
            assert bot.confirmed_below <= refusals[0]
            raise ConnectionRefusedError("database is down")
        await real_store(session, bot_id, updates)

    monkeypatch.setattr(inbox_module.inbox, "store", refusing_store)
    pavel = tg.user(606, "Pavel", token=TOKEN, language_code="en")
    update = await pavel.send_command("help")
    notice = await pavel.next_message(timeout=20)  # told to wait, not to resend (test_outage)
    assert message_text(notice) == text("inbox-unavailable")
    reply = await pavel.next_message(timeout=20)
    assert message_text(reply) == HELP
    assert refusals == [update["update_id"]]
    assert sum(message_text(m) == HELP for m in pavel.bot_messages()) == 1


async def test_sweep_hands_over_an_update_left_in_the_inbox(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A row left behind while running (its removal failed, its task was lost) is handled by the sweep,
    once, and leaves the inbox."""
    import datetime as dt

    from models import InboxUpdate
    from models.base import utcnow

    pavel = tg.user(607, "Pavel", token=TOKEN, language_code="en")
    update = await pavel.send_command("help")
    await pavel.next_message()
    await app.settled()
    await app.inbox.wait_handled()
    async with sessions() as session, session.begin():  # as if its removal had failed three minutes ago
        session.add(
            InboxUpdate(
                bot_id=app.bot.id,
                update_id=update["update_id"] + 1000,
                payload={**update, "update_id": update["update_id"] + 1000},
                received_at=utcnow() - dt.timedelta(minutes=3),
            )
        )
    assert await app.inbox.sweep() == 1
    assert message_text(await pavel.next_message()) == HELP
    await app.inbox.wait_handled()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(InboxUpdate)) == 0
    assert await app.inbox.sweep() == 0


async def test_a_press_counts_when_its_callback_answer_is_held_up_or_too_late(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Issue #14 item 15: a callback answer is useful only while the spinner turns, so a long flood wait is
    not waited out before it (the retry middleware used to sleep up to 60 s, holding the press's
    transaction), and an answer Telegram refuses as too old never fails the press itself."""
    pavel = tg.user(604, "Pavel", token=TOKEN, language_code="en")
    await pavel.send_command("lang")
    menu = await pavel.expect(text("lang-choose"))
    tg.fail_next("answerCallbackQuery", status=429, retry_after=30)
    await pavel.press(menu, "Русский")  # the language buttons are hardcoded (handlers/common.py), not keys
    # Well before the 30 s the flood limit asked for.
    await pavel.wait_last(text("lang-set", "ru"), timeout=10)

    tg.world.callback_ttl = 0.0  # every answer from now on arrives after the query expired
    await pavel.send_command("lang")
    menu = await pavel.expect(text("lang-choose", "ru"))
    await pavel.press(menu, "English")
    await pavel.wait_last(text("lang-set"))
    await app.settled()
    # Each menu edited into its answer, and nothing else: no apology in either language.
    assert [message_text(m) for m in pavel.bot_messages()] == [text("lang-set", "ru"), text("lang-set")]
    assert len(tg.calls("answerCallbackQuery")) == 2  # one try each: neither is retried into a loop
    async with sessions() as session:
        locale = await session.scalar(select(User.locale).where(User.telegram_id == pavel.id))
    assert locale == "en"  # both presses did their work
