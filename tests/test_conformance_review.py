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

from sqlalchemy import func, select, update
from sqlalchemy import text as sql
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
    asked,
    bot_env,
    cards_of,
    fill_default_form,
    form_question,
    fragment,
    invite_ten_reviewers,
    join,
    join_as_promoter,
    label,
    queued_contact,
    rita_with_a_card,
    run_cli,
    seed_project,
    text,
)

FULL_MARKS = {"greeting": 1, "presentation": 3, "offer": 1, "politeness": 1, "real_customer": 1}  # 100%
ALREADY_RATED = label("review-already-submitted")


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
    await rita.press(by_contact[first], label("btn-comment"))
    await rita.skip_to(text("comment-ask", id=first, limit=2000))
    await rita.send_text("Подробно. " * 250)  # 2499 characters once stripped
    await rita.expect(text("comment-too-long", length=2499, limit=2000))  # nothing was saved
    assert not [m for m in rita.bot_messages() if text("comment-saved") in message_text(m)]
    whole = "Подробно. " * 199 + "Итог."  # 1995 characters
    await rita.send_text(whole)  # still waiting for the comment: this one is taken
    await rita.expect(text("comment-saved"))
    await app.settled()
    [card_a, card_b] = await _assignments(sessions)
    assert card_a.contact_id == first and card_a.draft_comment == whole

    # A verdict that needs a comment: refused the same way, and submitted with the shorter one, whole.
    async with sessions() as session, session.begin():
        await session.execute(
            update(Assignment).where(Assignment.id == card_b.id).values(draft_marks=FULL_MARKS)
        )
    await rita.press(by_contact[second], label("verdict-reject"))
    await rita.expect(text("comment-required", id=second))
    await rita.send_text("x" * 2001)
    await rita.expect(text("comment-too-long", length=2001, limit=2000))
    await app.settled()
    async with sessions() as session:
        assert list(await session.scalars(select(Review))) == []
    await rita.send_text("y" * 2000)
    submitted = text("card-submitted", verdict=label("result-reject"), score=100)
    await tg.wait_until(lambda: message_text(rita.last_state(by_contact[second])) == submitted)
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
    receipt = await pavel.expect(fragment("intake-receipt"))
    contact_id = int(re.findall(r"#(\d+)", message_text(receipt))[0])
    assert message_text(receipt) == text("intake-receipt", id=contact_id, status=label("status-queued"))

    await pavel.send_command("cancel")
    # Nothing to cancel, and the contacts sent are saved (not "Nothing was saved").
    assert message_text(await pavel.next_message()) == text("intake-nothing-to-cancel")
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
    assert contact is not None and contact.status == ContactStatus.QUEUED  # kept, waiting for review

    # A form open: /cancel drops that contact only, and says so.
    await pavel.send_text(label("menu-new-contact"))
    await pavel.wait_last(asked(1, 5, form_question("product")))
    await pavel.send_command("cancel")
    assert message_text(await pavel.next_message()) == text("intake-cancelled")
    async with sessions() as session:
        assert await session.get(Contact, contact_id) is not None


# -- item 15 ------------------------------------------------------------------------------------------
async def _lock_waiters(sessions: async_sessionmaker[AsyncSession]) -> int:
    """PostgreSQL backends of this test's database waiting for a lock."""
    async with sessions() as session:
        return int(
            await session.scalar(
                sql(
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

    comment_required = fragment("comment-required")  # for any contact

    def asked_for_comment() -> bool:
        return any(comment_required in message_text(m) for m in anna.bot_messages())

    if USE_POSTGRES:
        async with engine.connect() as gate:
            held = await gate.begin()
            await gate.execute(sql("SELECT id FROM contact WHERE id = :id FOR UPDATE"), {"id": contact_id})
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
    submitted = text("card-submitted", verdict=label("result-approve"), score=100)
    await tg.wait_until(lambda: message_text(anna.last_state(card)) == submitted)
    if USE_POSTGRES or fraud_answer:  # Fraud came second (always so on PostgreSQL here)
        assert fraud_answer == ALREADY_RATED
        assert not asked_for_comment()
    else:  # SQLite ran Fraud first: it asked for a comment, then Approve was submitted
        assert asked_for_comment()
    # Whatever the order, the bot waits for no comment on a rated card.
    anna.skip_pending()
    await anna.send_text("ok")
    assert message_text(await anna.next_message()) == text("fallback-message")


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
    rita, contact_id, card = await rita_with_a_card(app, tg, sessions, project)
    await tg.wait_until(lambda: buttons(rita.last_state(card)))  # the outbox puts the buttons on once sent
    deadline = fragment("card-deadline")  # "Rate by ", whatever the time
    assert deadline in message_text(rita.last_state(card))

    env = bot_env(tg, migrated_url, tmp_path, redis_url)
    removed = await asyncio.to_thread(
        run_cli, ["admin", "remove", str(project.id), str(rita.id), "reviewer"], env, PROJECT_ROOT, 120
    )
    assert removed.returncode == 0, removed.stderr
    assert "1 open card(s) returned" in removed.stdout  # the CLI's own words (bot/cli/admin.py), no key
    taken_back = text("card-taken-back", id=contact_id, project=project.name)
    await tg.wait_until(lambda: message_text(rita.last_state(card)) == taken_back, timeout=20)
    now = rita.last_state(card)
    assert deadline not in message_text(now) and buttons(now) == []
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
    # Both reviewers have had it.
    await manager.expect(text("alert-exhausted", id=contact_id, project=project.name, tries=2))
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
    # The alert says that with a single reviewer it waits.
    await manager.expect(text("alert-exhausted", id=contact_id, project=project.name, tries=1))
    assert len(await _assignments(sessions)) == 1  # no second card for Rita
    expired = text("card-expired", id=contact_id)
    await tg.wait_until(lambda: any(message_text(m) == expired for m in rita.bot_messages()), 20)
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
    _rita, _contact_id, sent = await rita_with_a_card(app, tg, sessions, project)
    card = message_text(sent)
    [assignment] = await _assignments(sessions)
    assert assignment.deadline_at is not None
    moscow = assignment.deadline_at.astimezone(ZoneInfo("Europe/Moscow"))
    # A deadline on another day than today's (in Moscow) carries its date: the test may run near midnight.
    today = dt.datetime.now(dt.UTC).astimezone(ZoneInfo("Europe/Moscow")).date()
    shown = f"{moscow:%H:%M}" if moscow.date() == today else f"{moscow:%d.%m.%Y %H:%M}"
    assert text("card-deadline", time=f"{shown} MSK") in card and "UTC" not in card

    async with sessions() as session, session.begin():
        await session.execute(
            update(Project).where(Project.id == project.id).values(timezone="Asia/Yekaterinburg")
        )
    await invite_ten_reviewers(tg, admin, project)
    await app.settled()
    shown = message_text(admin.last())
    code = re.findall(r"start=inv_(\w+)", shown)[0]
    async with sessions() as session:
        invite = (await session.scalars(select(Invite).where(Invite.code == code))).one()
    assert invite.expires_at is not None
    local = invite.expires_at.astimezone(ZoneInfo("Asia/Yekaterinburg"))
    # Everything but the link (its bot name is the stand-in's), whole; then the link itself.
    head = fragment(
        "invite-created",
        "ru",
        project=project.name,
        role=label("role-reviewer", "ru"),
        uses=10,
        expires=f"{local:%d.%m.%Y %H:%M} UTC+05",
    )
    assert shown.startswith(head)
    assert re.fullmatch(rf"https://t\.me/\w+\?start=inv_{code}", shown[len(head) :])
