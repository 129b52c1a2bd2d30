"""Reviewers and promoters as real people meet them (issue #27 items 13, 14, 15, 17, 19 and 20), against the
stand-in over real HTTP and a real database (SQLite, or PostgreSQL with FIELDCHECK_TEST_DB=postgres).

What the real Bot API does here, from its source:
- Every press of an inline button is its own callback query: tdlib's CallbackQueriesManager::on_new_query
  (td/telegram/CallbackQueriesManager.cpp) sends one updateNewCallbackQuery per press, nothing merged or
  debounced, so two presses in one burst reach the bot as two updates that run side by side.
- A bot's text message may have at most 4096 characters: td/telegram/MessageContent.cpp,
  create_input_message_content ("Message is too long" when utf8_length(text) exceeds the option
  message_text_length_max). A reviewer can type that much into one comment, which the promoter's feedback
  then carries.
- editMessageText without reply_markup leaves no buttons: telegram-bot-api/Client.cpp,
  Client::process_edit_message_text_query passes get_reply_markup's result (null when absent) to
  td_api::editMessageText. The stand-in's editMessageText does the same (telegram_standin/server.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.settings import PROJECT_ROOT
from jobs import review as review_jobs
from models import (
    AlertKind,
    Assignment,
    AssignmentStatus,
    Contact,
    ContactStatus,
    Invite,
    ManagerAlert,
    Project,
    Review,
    Role,
    User,
    Verdict,
)
from models.base import utcnow
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import buttons, message_text
from tests.conftest import USE_POSTGRES
from tests.helpers import (
    bot_env,
    cards_of,
    fill_default_form,
    join,
    join_as_promoter,
    queued_contact,
    run_cli,
    seed_project,
)

FULL_MARKS = {"greeting": 1, "presentation": 3, "offer": 1, "politeness": 1, "real_customer": 1}
ALREADY_RATED = "This card was already submitted: your first press counted."


async def _no_analysis_wait(sessions: async_sessionmaker[AsyncSession], **values: Any) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(Project).values(analysis_wait_minutes=0, **values))


async def _assignments(sessions: async_sessionmaker[AsyncSession]) -> list[Assignment]:
    async with sessions() as session:
        return list(await session.scalars(select(Assignment).order_by(Assignment.id)))


# -- item 13 ------------------------------------------------------------------------------------------
async def test_a_comment_over_the_limit_is_refused_with_the_limit_and_never_stored_cut(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A comment over 2000 characters was stored cut while the reviewer read "Comment saved". Now the
    reviewer is told the length and the limit, nothing is stored, the bot still waits for the comment (and
    the verdict that needs it), and the next, shorter message is kept whole."""
    project = await seed_project(sessions)
    await _no_analysis_wait(sessions)
    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    first = await queued_contact(sessions, project, promoter_telegram_id=8101)
    second = await queued_contact(sessions, project, promoter_telegram_id=8102)
    assert await review_jobs.dispatch(sessions, app.i18n) == 2
    await tg.wait_until(lambda: len(cards_of(rita)) == 2, timeout=20)
    by_contact = {int(re.findall(r"#(\d+)", message_text(c))[0]): c for c in cards_of(rita)}

    # The Comment button: the limit is said up front, and again when it is passed.
    await rita.press(by_contact[first], "Comment")
    asked = await rita.skip_to(f"Write your comment on contact #{first}")
    assert "2000" in message_text(asked)
    await rita.send_text("Подробно. " * 250)  # 2499 characters once stripped
    refused = await rita.expect("the limit is 2000")
    assert "2499 characters" in message_text(refused) and "Nothing was saved" in message_text(refused)
    assert not [m for m in rita.bot_messages() if "Comment saved" in message_text(m)]
    whole = "Подробно. " * 199 + "Итог."  # 1995 characters
    await rita.send_text(whole)  # still waiting for the comment: this one is taken
    await rita.expect("Comment saved on the card")
    await app.settled()
    [card_a, card_b] = await _assignments(sessions)
    assert card_a.contact_id == first and card_a.draft_comment == whole

    # A verdict that needs a comment: refused the same way, and submitted with the shorter one, whole.
    async with sessions() as session, session.begin():
        await session.execute(
            update(Assignment).where(Assignment.id == card_b.id).values(draft_marks=FULL_MARKS)
        )
    await rita.press(by_contact[second], "Reject")
    await rita.expect(f"needs a comment: write it for contact #{second}")
    await rita.send_text("x" * 2001)
    await rita.expect("This comment is 2001 characters long; the limit is 2000.")
    await app.settled()
    async with sessions() as session:
        assert list(await session.scalars(select(Review))) == []
    await rita.send_text("y" * 2000)
    await tg.wait_until(lambda: "Submitted" in message_text(rita.last_state(by_contact[second])))
    await app.settled()
    async with sessions() as session:
        [written] = list(await session.scalars(select(Review)))
    assert written.verdict == Verdict.REJECT and written.comment == "y" * 2000


# -- item 14 ------------------------------------------------------------------------------------------
async def test_cancel_right_after_a_receipt_says_there_is_nothing_to_cancel(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    """/cancel just after the receipt answered "Nothing was saved", as if the contact just sent were lost.
    With no form open it now says there is nothing to cancel and that sent contacts are kept; with a form
    open it says that this contact (only) is not saved."""
    project = await seed_project(sessions)
    pavel = await join_as_promoter(tg, sessions, project)
    await fill_default_form(tg, pavel)
    await pavel.send_voice(audio_dir / "dialogue.ogg")
    receipt = await pavel.expect("received")
    contact_id = int(re.findall(r"#(\d+)", message_text(receipt))[0])

    await pavel.send_command("cancel")
    answer = message_text(await pavel.next_message())
    assert "nothing to cancel" in answer and "contacts you have sent are saved" in answer
    assert "Nothing was saved" not in answer
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
    assert contact is not None and contact.status == ContactStatus.QUEUED  # kept, waiting for review

    # A form open: /cancel drops that contact only, and says so.
    await pavel.send_text("➕ New contact")
    await pavel.wait_last("1/5")
    await pavel.send_command("cancel")
    answer = message_text(await pavel.next_message())
    assert "Cancelled: this contact was not saved" in answer and "sent before are kept" in answer
    async with sessions() as session:
        assert await session.get(Contact, contact_id) is not None


# -- item 15 ------------------------------------------------------------------------------------------
async def _lock_waiters(sessions: async_sessionmaker[AsyncSession]) -> int:
    """PostgreSQL backends of this test's database waiting for a lock."""
    async with sessions() as session:
        return int(
            await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            or 0
        )


async def _until(condition: Any) -> None:
    """Poll an async condition (the database's state), as a job would run again; no time is asserted."""
    for _ in range(400):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


async def test_fraud_pressed_in_the_same_burst_as_approve_is_told_the_card_is_rated(
    app: Runtime,
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """Issue #27 item 15: Approve and then Fraud in one burst (seen on PostgreSQL): the Fraud press read the
    card still open while Approve's transaction was writing, asked for a comment, and the reviewer read
    "needs a comment" under a card that said it was submitted. Both presses are fired concurrently. On
    PostgreSQL the test holds the contact's row, so Approve stops mid-transaction (its card claimed, not yet
    committed) while Fraud arrives, which is exactly the race; on SQLite transactions run one at a time.
    Either way one review is written, and a Fraud press that comes second is told the card is already
    rated: no "needs a comment", and the bot is left waiting for no comment."""
    project = await seed_project(sessions)
    await _no_analysis_wait(sessions)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3401, "Anna")
    contact_id = await queued_contact(sessions, project)
    assert await review_jobs.dispatch(sessions, app.i18n) == 1
    await tg.wait_until(lambda: len(cards_of(anna)) == 1, timeout=20)
    card = cards_of(anna)[0]
    [assignment] = await _assignments(sessions)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Assignment).where(Assignment.id == assignment.id).values(draft_marks=FULL_MARKS)
        )
    await app.settled()
    approve, fraud = f"c:verdict:{assignment.id}:0", f"c:verdict:{assignment.id}:2"

    def asked_for_comment() -> bool:
        return any("needs a comment" in message_text(m) for m in anna.bot_messages())

    if USE_POSTGRES:
        async with engine.connect() as gate:
            held = await gate.begin()
            await gate.execute(text("SELECT id FROM contact WHERE id = :id FOR UPDATE"), {"id": contact_id})
            first = await anna.press(card, data=approve)
            await _until(lambda: _at_least(sessions, 1))  # Approve is inside its transaction, held
            second = await anna.press(card, data=fraud)

            async def both_waiting_or_answered() -> bool:
                return asked_for_comment() or await _lock_waiters(sessions) >= 2

            await _until(both_waiting_or_answered)
            await held.rollback()
    else:
        first, second = await asyncio.gather(anna.press(card, data=approve), anna.press(card, data=fraud))
    approve_answer = (await anna.callback_answer(first)).get("text") or ""
    fraud_answer = (await anna.callback_answer(second)).get("text") or ""
    await app.settled()

    async with sessions() as session:
        reviews = list(await session.scalars(select(Review)))
        closed = await session.get(Assignment, assignment.id)
    assert [r.verdict for r in reviews] == [Verdict.APPROVE] and approve_answer == ""
    assert closed is not None and closed.status == AssignmentStatus.DONE
    await tg.wait_until(lambda: "Submitted" in message_text(anna.last_state(card)))
    if USE_POSTGRES or fraud_answer:  # Fraud came second (always so on PostgreSQL here)
        assert fraud_answer == ALREADY_RATED
        assert not asked_for_comment()
    else:  # SQLite ran Fraud first: it asked for a comment, then Approve was submitted
        assert asked_for_comment()
    # Whatever the order, the bot waits for no comment on a rated card.
    anna.skip_pending()
    await anna.send_text("ok")
    assert "I did not understand" in message_text(await anna.next_message())


async def _at_least(sessions: async_sessionmaker[AsyncSession], waiters: int) -> bool:
    return await _lock_waiters(sessions) >= waiters


# -- item 17 ------------------------------------------------------------------------------------------
async def test_a_reviewer_removed_in_the_shell_sees_the_card_taken_back(
    app: Runtime,
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    migrated_url: str,
    tmp_path: Path,
    redis_url: str | None,
) -> None:
    """`fieldcheck admin remove` took the card back in the database, but the card in the reviewer's chat
    still said "Rate by …" with live buttons. It is now edited, as an expired one is, to say it was taken
    back, and it keeps no buttons."""
    project = await seed_project(sessions)
    await _no_analysis_wait(sessions)
    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    contact_id = await queued_contact(sessions, project)
    assert await review_jobs.dispatch(sessions, app.i18n) == 1
    card = await rita.expect(f"Contact #{contact_id}")
    await tg.wait_until(lambda: buttons(rita.last_state(card)))  # the outbox puts the buttons on once sent
    assert "Rate by" in message_text(rita.last_state(card))

    env = bot_env(tg, migrated_url, tmp_path, redis_url)
    removed = await asyncio.to_thread(
        run_cli, ["admin", "remove", str(project.id), str(rita.id), "reviewer"], env, PROJECT_ROOT, 120
    )
    assert removed.returncode == 0, removed.stderr
    assert "1 open card(s) returned" in removed.stdout
    await tg.wait_until(lambda: "was taken back" in message_text(rita.last_state(card)), timeout=20)
    now = rita.last_state(card)
    assert f"Contact #{contact_id} was taken back: you no longer review Tasting" in message_text(now)
    assert "Rate by" not in message_text(now) and buttons(now) == []
    [assignment] = await _assignments(sessions)
    assert assignment.status == AssignmentStatus.RETURNED


# -- item 19 ------------------------------------------------------------------------------------------
async def test_a_contact_every_reviewer_let_expire_goes_round_them_in_turn(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Once every reviewer had let it expire, the contact went to whoever sorted first, the same reviewer
    every round. Now it goes to whoever had it least and longest ago, never straight back to the one who
    had it last, and the managers hear of it once."""
    project = await seed_project(sessions)
    await _no_analysis_wait(sessions, review_sla_minutes=1, max_open_cards=1)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    oleg = await join(tg, sessions, project, Role.REVIEWER, 3011, "Oleg")
    contact_id = await queued_contact(sessions, project)
    now = utcnow()
    for _ in range(5):
        assert await review_jobs.dispatch(sessions, app.i18n, now) == 1
        now += dt.timedelta(minutes=5)
        assert await review_jobs.expire(sessions, app.i18n, now) == 1
    async with sessions() as session:
        holders = list(
            await session.scalars(
                select(User.telegram_id)
                .join(Assignment, Assignment.reviewer_id == User.id)
                .where(Assignment.contact_id == contact_id)
                .order_by(Assignment.id)
            )
        )
    assert len(holders) == 5 and set(holders) == {rita.id, oleg.id}
    assert all(a != b for a, b in itertools.pairwise(holders))  # never twice in a row
    alert = await manager.expect("every reviewer has had it")
    assert f"#{contact_id}" in message_text(alert)
    assert await _exhausted_alerts(sessions) == 1  # raised once, not once per round


async def test_with_one_reviewer_an_exhausted_contact_is_not_offered_back_in_a_loop(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The only reviewer let it expire: it is not handed straight back to them round after round; the
    managers are told (once) and it waits for another reviewer, who then gets it."""
    project = await seed_project(sessions)
    await _no_analysis_wait(sessions, review_sla_minutes=1)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    contact_id = await queued_contact(sessions, project)
    now = utcnow()
    assert await review_jobs.dispatch(sessions, app.i18n, now) == 1
    now += dt.timedelta(minutes=5)
    assert await review_jobs.expire(sessions, app.i18n, now) == 1
    for _ in range(3):
        assert await review_jobs.dispatch(sessions, app.i18n, now) == 0
        now += dt.timedelta(minutes=5)
    alert = await manager.expect("every reviewer has had it")
    assert f"#{contact_id}" in message_text(alert) and "with a single reviewer it waits" in message_text(
        alert
    )
    assert len(await _assignments(sessions)) == 1  # no second card for Rita
    await tg.wait_until(lambda: any("Time is up" in message_text(m) for m in rita.bot_messages()), 20)
    await app.settled()
    assert cards_of(rita) == []  # her one card says its time is up, and no live card came back to her

    assert await _exhausted_alerts(sessions) == 1

    oleg = await join(tg, sessions, project, Role.REVIEWER, 3011, "Oleg")
    assert await review_jobs.dispatch(sessions, app.i18n, now) == 1
    await tg.wait_until(lambda: len(cards_of(oleg)) == 1, timeout=20)


async def _exhausted_alerts(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(ManagerAlert).where(ManagerAlert.kind == AlertKind.EXHAUSTED)
            )
            or 0
        )


# -- item 20 ------------------------------------------------------------------------------------------
async def test_times_people_read_are_in_the_projects_zone_with_the_zone_named(
    app: Runtime,
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    admin: UserClient,
) -> None:
    """A reviewer in Moscow read "Rate by 22:54 UTC" and an admin "valid until … UTC". The card's deadline
    is now in the project's zone (Europe/Moscow by default: MSK), and an invite's expiry too (a project in
    Yekaterinburg, whose zone has no letters: UTC+05)."""
    project = await seed_project(sessions)
    await _no_analysis_wait(sessions)
    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    contact_id = await queued_contact(sessions, project)
    assert await review_jobs.dispatch(sessions, app.i18n) == 1
    card = message_text(await rita.expect(f"Contact #{contact_id}"))
    [assignment] = await _assignments(sessions)
    assert assignment.deadline_at is not None
    moscow = assignment.deadline_at.astimezone(ZoneInfo("Europe/Moscow"))
    assert f"{moscow:%H:%M} MSK." in card and "UTC" not in card

    async with sessions() as session, session.begin():
        await session.execute(
            update(Project).where(Project.id == project.id).values(timezone="Asia/Yekaterinburg")
        )
    await admin.send_command("invite")
    await admin.press(await admin.next_message(), "Demo Foods / Tasting")
    await tg.wait_until(lambda: "роль" in message_text(admin.last()))
    await admin.press(admin.last(), "оценщик")
    await tg.wait_until(lambda: "Сколько" in message_text(admin.last()))
    await admin.press(admin.last(), "10")
    await tg.wait_until(lambda: "start=inv_" in message_text(admin.last()))
    await app.settled()
    shown = message_text(admin.last())
    code = re.findall(r"start=inv_(\w+)", shown)[0]
    async with sessions() as session:
        invite = (await session.scalars(select(Invite).where(Invite.code == code))).one()
    assert invite.expires_at is not None
    local = invite.expires_at.astimezone(ZoneInfo("Asia/Yekaterinburg"))
    assert f"действует до {local:%d.%m.%Y %H:%M} UTC+05" in shown
