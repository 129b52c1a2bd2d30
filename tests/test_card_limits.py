"""Cards always reach the reviewer: a form too long for one Telegram message is shortened on the card and
sent whole before it, a long comment does not break the card, and a contact that every reviewer has had
goes round again (with the managers told) instead of waiting in a dead queue (issue #14 items 4 and 5)."""

from __future__ import annotations

import datetime as dt
import html

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from jobs import review as review_jobs
from models import (
    Assignment,
    AssignmentKind,
    AssignmentStatus,
    Contact,
    ContactStatus,
    FlagKind,
    Project,
    Role,
    VoiceFlag,
)
from models.base import utcnow
from services.contact_view import ContactView, HeardVoice
from telegram_standin import StandIn
from telegram_standin.driver import buttons, message_text
from telegram_ui.cards import CARD_LIMIT, card_text, rendered, visible_length
from telegram_ui.i18n import create_i18n
from tests.helpers import fragment, join, label, queued_contact, rita_with_a_card, seed_project, text

LONG_FORM = {
    "questions": [
        {
            "key": f"q{i}",
            "type": "text",
            "max_length": 1000,
            "text": {"ru": f"Вопрос {i}", "en": f"Question {i}"},
        }
        for i in range(6)
    ]
}


async def test_long_form_is_shortened_on_the_card_and_sent_whole_before_it(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions, form_schema=LONG_FORM, analysis_wait_minutes=0)
    reviewer = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    # Six answers of 1000 characters, emoji included (2 UTF-16 units each, as Telegram counts them).
    answers = {f"q{i}": (f"answer {i} " + "😀" * 300 + "x" * 690)[:1000] for i in range(6)}
    contact_id = await queued_contact(sessions, project, answers)

    assert await review_jobs.dispatch(sessions, app.i18n) == 1
    card = await reviewer.skip_to(text("card-title", id=contact_id, project=project.name))
    assert visible_length(message_text(card)) <= CARD_LIMIT
    # A working card, not just text: its buttons are put on once Telegram has answered the send.
    approve = label("verdict-approve")
    await tg.wait_until(lambda: any(b["text"] == approve for b in buttons(reviewer.last_state(card))))
    full_form = fragment("card-full-form")  # "📝 Full form of contact #", any contact
    full = [message_text(m) for m in reviewer.bot_messages() if full_form in message_text(m)]
    assert len(full) >= 2 and all(visible_length(part) <= CARD_LIMIT for part in full)
    for answer in answers.values():  # every answer whole in the form messages
        assert any(answer in part for part in full)


async def test_long_comment_is_saved_and_the_card_still_updates(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions, analysis_wait_minutes=0)
    reviewer, contact_id, card = await rita_with_a_card(app, tg, sessions, project)
    await tg.wait_until(lambda: buttons(reviewer.last_state(card)))  # buttons are put on once it is sent
    await reviewer.press(reviewer.last_state(card), label("btn-comment"))
    await reviewer.expect(text("comment-ask", id=contact_id, limit=2000))
    # About 4000 characters: refused with the limit, never stored cut (issue #27 item 13); the longest
    # comment allowed is then saved whole.
    await reviewer.send_text("Очень подробный разбор. " * 170)  # 4079 characters once stripped
    await reviewer.expect(text("comment-too-long", length=4079, limit=2000))
    comment = "Очень подробный разбор. " * 83  # 1991 characters once stripped
    await reviewer.send_text(comment)
    await reviewer.expect(text("comment-saved"))
    await tg.wait_until(lambda: "Очень подробный разбор" in message_text(card))
    assert visible_length(message_text(card)) <= CARD_LIMIT
    async with sessions() as session:
        assignment = (await session.scalars(select(Assignment))).one()
        assert assignment.draft_comment == comment.strip()
    apologies = (text("error-generic"), text("error-after-save"))
    assert not [m for m in reviewer.bot_messages() if any(a in message_text(m) for a in apologies)]


async def test_contact_every_reviewer_had_goes_round_again_and_managers_hear(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions, analysis_wait_minutes=0, review_sla_minutes=1)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    oleg = await join(tg, sessions, project, Role.REVIEWER, 3011, "Oleg")
    contact_id = await queued_contact(sessions, project)
    now = utcnow()
    for _ in range(2):  # each reviewer gets it once and lets it expire
        assert await review_jobs.dispatch(sessions, app.i18n, now) == 1
        now += dt.timedelta(minutes=5)
        assert await review_jobs.expire(sessions, app.i18n, now) == 1
    assert await review_jobs.dispatch(sessions, app.i18n, now) == 1  # not a dead queue
    # Both reviewers have had it.
    await manager.expect(text("alert-exhausted", id=contact_id, project=project.name, tries=2))
    async with sessions() as session:
        statuses = list(await session.scalars(select(Assignment.status).order_by(Assignment.id)))
        contact = await session.get(Contact, contact_id)
    assert statuses == [AssignmentStatus.EXPIRED, AssignmentStatus.EXPIRED, AssignmentStatus.OPEN]
    assert contact is not None and contact.status == ContactStatus.IN_REVIEW
    assert rita.bot_messages() and oleg.bot_messages()


def test_a_card_renders_from_its_view_alone() -> None:
    """A renderer needs no database: the card is text from a ContactView (what the voice analysis heard
    included), built here by hand, with the deadline in the project's zone."""
    project = Project(
        id=1, name="Tasting <Moscow>", timezone="Europe/Moscow", scorecard=None, form_schema=None
    )
    contact = Contact(id=42, project_id=1, form_answers={})
    flag = VoiceFlag(
        contact_id=42,
        kind=FlagKind.DUPLICATE_RECORDING,
        score=1.0,
        matched_contact_ids=[7],
        stored_details={},
    )
    view = ContactView(
        contact, project, [flag], [HeardVoice("promoter", 41.6), HeardVoice("customer", 12)], 3.2
    )
    assignment = Assignment(
        id=5,
        contact_id=42,
        kind=AssignmentKind.PRIMARY,
        draft_marks={},
        deadline_at=dt.datetime(2026, 1, 5, 19, 54, tzinfo=dt.UTC),
    )
    # The card as sent (HTML, so `label`: the markup and the escaped name kept), line by line.
    lines = rendered(create_i18n(), "en", card_text, view, assignment, "en").split("\n")
    assert lines[0] == label("card-title", id=42, project=html.escape("Tasting <Moscow>", quote=False))
    heard = [
        label("card-voice-part", role=label("voice-role-promoter"), seconds=42),
        label("card-voice-part", role=label("voice-role-customer"), seconds=12),
        label("card-voice-overlap", seconds=3),
    ]
    assert label("card-voices", voices=" · ".join(heard)) in lines
    # The duplicate's flag line names the earlier contact.
    flag_line = label("card-flag", flag=label("flag-duplicate-recording"), score="1.00", matches="#7")
    assert flag_line in lines
    # 19:54 UTC is 22:54 in Moscow; with its date, as it is not today (but on 5 January 2026).
    deadlines = {label("card-deadline", time=f"{day}22:54 MSK") for day in ("05.01.2026 ", "")}
    assert deadlines & set(lines)
