"""The reviewer's card with the speech report (issue #25 item 5), with the real bot, database and Bot API
stand-in: the transcript with speakers in an expandable quote, the script checks, the machine's leaning;
a very long transcript shortened to keep the card within Telegram's limit; the marks pre-filled from the
checks where the project has speech on, still the reviewer's to change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from jobs import review as review_jobs
from models import Assignment, Project, Role
from telegram_standin import StandIn
from telegram_standin.driver import buttons, message_text
from telegram_ui.cards import CARD_LIMIT
from tests.helpers import join, queued_contact, seed_project, store_speech

DIALOGUE = [
    (1.0, "promoter", "Здравствуйте, меня зовут Анна, компания «Вкусно»."),
    (4.2, "customer", "Добрый день."),
    (6.0, "promoter", "Хотите попробовать новый вкус? Сегодня скидка."),
    (9.5, "customer", "Давайте, а сколько стоит?"),
    (12.0, "promoter", "Двести рублей. Спасибо, до свидания!"),
]
CHECKS = [
    {"key": "greeting", "status": "done", "quote": "Здравствуйте", "start": 1.0, "scorecard": "greeting"},
    {
        "key": "product_named",
        "status": "done",
        "quote": "новый вкус",
        "start": 6.8,
        "scorecard": "presentation",
    },
    {"key": "presentation", "status": "done", "quote": "скидка", "start": 8.1, "scorecard": "presentation"},
    {"key": "offer", "status": "not_done", "scorecard": "offer"},
    {"key": "goodbye", "status": "unsure", "quote": "до свидания", "start": 65.2, "scorecard": "politeness"},
    {"key": "customer_share", "status": "done", "critical": True, "scorecard": "real_customer"},
    {"key": "own_item", "status": "done", "quote": "Вкусно", "start": 2.0, "scorecard": "not_on_the_card"},
]
VERDICT = {
    "decision": "for_person",
    "confidence": 0.62,
    "leaning": "reject",
    "reasons": ["critical_failed:offer", "unsure:goodbye"],
}


def report(
    lines: list[tuple[float, str, str]] = DIALOGUE, checks: list[dict[str, Any]] = CHECKS
) -> dict[str, Any]:
    """What the voice worker stores (services.speech.pipeline.SpeechReport.as_dict's shape)."""
    return {
        "language": "ru",
        "segments": [{"start": s, "end": s + 2.0, "speaker": who, "text": text} for s, who, text in lines],
        "checks": checks,
        "verdict": VERDICT,
    }


async def speech_project(
    sessions: async_sessionmaker[AsyncSession], name: str = "Tasting", *, speech: bool = True
) -> Project:
    project = await seed_project(sessions, name)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Project)
            .where(Project.id == project.id)
            .values(analysis_wait_minutes=0, speech_settings={"enabled": True} if speech else {})
        )
    return project


def utf16_slice(text: str, offset: int, length: int) -> str:
    """What an entity covers: Telegram counts offsets in UTF-16 code units."""
    return text.encode("utf-16-le")[2 * offset : 2 * (offset + length)].decode("utf-16-le")


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def draft_marks(sessions: async_sessionmaker[AsyncSession], contact_id: int) -> dict[str, int]:
    async with sessions() as session:
        assignment = await session.scalar(select(Assignment).where(Assignment.contact_id == contact_id))
        assert assignment is not None
        return dict(assignment.draft_marks)


async def test_card_shows_the_labelled_transcript_in_an_expandable_quote_and_the_checks(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await speech_project(sessions)
    reviewer = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    contact_id = await queued_contact(sessions, project)
    await store_speech(sessions, contact_id, report())

    assert await review_jobs.dispatch(sessions, app.i18n) == 1
    card = await reviewer.skip_to(f"Contact #{contact_id}")
    text = message_text(card)
    assert "🤖 Speech check: yours to decide, leaning to reject (62%): Asked for the sale: not done" in text
    assert "✅ Greeting: «Здравствуйте» 0:01" in text
    assert "❌ Asked for the sale" in text
    assert "❔ Goodbye: «до свидания» 1:05" in text
    assert "✅ own item: «Вкусно» 0:02" in text  # a project's own script item, by its key
    # Telegram's (the stand-in's tdlib) parse of the HTML: one expandable quote, holding every line labelled.
    [(offset, length)] = [(e[1], e[2]) for e in card["_entities"] if e[0] == "expandable_blockquote"]
    quoted = utf16_slice(text, offset, length).split("\n")
    assert quoted == [
        "Promoter: Здравствуйте, меня зовут Анна, компания «Вкусно».",
        "Customer: Добрый день.",
        "Promoter: Хотите попробовать новый вкус? Сегодня скидка.",
        "Customer: Давайте, а сколько стоит?",
        "Promoter: Двести рублей. Спасибо, до свидания!",
    ]
    assert "left out" not in text
    # The marks the checks said are on the buttons, marked as the machine's; the reviewer can change them.
    await tg.wait_until(lambda: buttons(reviewer.last_state(card)))
    labels = [b["text"] for b in buttons(reviewer.last_state(card))]
    assert labels[:5] == [
        "✅ Greeting 🤖",
        "🔢 Product presentation: 3/3 🤖",
        "❌ Asked for the sale 🤖",
        "▫️ Politeness",
        "✅ Real customer 🤖",
    ]
    assert "🤖 Marks pre-filled from the speech checks" in text
    await reviewer.press(reviewer.last_state(card), "✅ Greeting 🤖")
    await tg.wait_until(lambda: "❌ Greeting" in [b["text"] for b in buttons(reviewer.last_state(card))])
    assert (await draft_marks(sessions, contact_id))["greeting"] == 0
    edited = message_text(reviewer.last_state(card))
    assert "Customer: Добрый день." in edited  # the edited card keeps the transcript


async def test_a_very_long_transcript_is_shortened_and_the_rating_part_stays(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await speech_project(sessions)
    reviewer = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    contact_id = await queued_contact(sessions, project)
    # The worker keeps at most 400 turns; each long, with emoji (two UTF-16 units each, as Telegram counts).
    long = [
        (i * 3.0, "promoter" if i % 2 == 0 else "customer", f"Реплика {i}: " + "слово " * 40 + "😀" * 10)
        for i in range(400)
    ]
    await store_speech(sessions, contact_id, report(long))

    assert await review_jobs.dispatch(sessions, app.i18n) == 1
    card = await reviewer.skip_to(f"Contact #{contact_id}")
    text = message_text(card)
    assert utf16_length(text) <= CARD_LIMIT
    assert "Promoter: Реплика 0:" in text and "Реплика 399" not in text
    shown = sum(f"Реплика {i}:" in text for i in range(400))
    assert 5 <= shown < 400
    assert f"✂️ {400 - shown} more line(s) left out of the transcript" in text
    [quote] = [e for e in card["_entities"] if e[0] == "expandable_blockquote"]
    assert utf16_slice(text, quote[1], quote[2]).startswith("Promoter: Реплика 0:")
    # The rating part whole: the checks, the score, the deadline and every button; the answers uncut.
    assert "❌ Asked for the sale" in text and "Score:" in text and "Rate by" in text
    assert "What did you offer?: Coffee" in text and "more answer(s)" not in text
    await tg.wait_until(lambda: buttons(reviewer.last_state(card)))
    labels = [b["text"] for b in buttons(reviewer.last_state(card))]
    assert len(labels) == 5 + 3 + 2 and "✅ Approve" in labels and "↩ Return" in labels
    # A press edits the card: still within the limit, still shortened the same way.
    await reviewer.press(reviewer.last_state(card), "▫️ Politeness")
    await tg.wait_until(lambda: "✅ Politeness" in [b["text"] for b in buttons(reviewer.last_state(card))])
    edited = message_text(reviewer.last_state(card))
    assert utf16_length(edited) <= CARD_LIMIT and "left out of the transcript" in edited


async def test_marks_are_prefilled_from_decided_checks_only_where_speech_is_on(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    on = await speech_project(sessions, "Tasting")
    off = await speech_project(sessions, "Shelf", speech=False)
    rita = await join(tg, sessions, on, Role.REVIEWER, 3010, "Rita")
    oleg = await join(tg, sessions, off, Role.REVIEWER, 3011, "Oleg")
    with_speech = await queued_contact(sessions, on, promoter_telegram_id=8100)
    without_speech = await queued_contact(sessions, off, promoter_telegram_id=8101)
    no_report = await queued_contact(sessions, on, promoter_telegram_id=8102)
    for contact_id in (with_speech, without_speech):  # a report stored, e.g. speech turned off since
        await store_speech(sessions, contact_id, report())

    assert await review_jobs.dispatch(sessions, app.i18n) == 3
    # done: the criterion's best mark (a scale's max), not done: its worst; the unsure goodbye leaves
    # politeness empty, and a check naming no criterion of the scorecard fills nothing.
    assert await draft_marks(sessions, with_speech) == {
        "greeting": 1,
        "presentation": 3,
        "offer": 0,
        "real_customer": 1,
    }
    assert await draft_marks(sessions, without_speech) == {}
    assert await draft_marks(sessions, no_report) == {}
    await rita.skip_to(f"Contact #{with_speech}")
    card = await oleg.skip_to(f"Contact #{without_speech}")
    await tg.wait_until(lambda: buttons(oleg.last_state(card)))
    assert not any("🤖" in b["text"] for b in buttons(oleg.last_state(card)))
    assert "Marks pre-filled" not in message_text(card)
