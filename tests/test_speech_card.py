"""The reviewer's card with the speech report (issue #25 item 5), with the real bot, database and Bot API
stand-in: the transcript with speakers in an expandable quote, the script checks, the machine's leaning;
a very long transcript shortened to keep the card within Telegram's limit; the marks pre-filled from the
checks where the project has speech on, still the reviewer's to change."""

from __future__ import annotations

import html
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from jobs import review as review_jobs
from models import Assignment, Project, Role
from services.scorecard import DEFAULT_SCORECARD, parse_scorecard
from telegram_standin import StandIn
from telegram_standin.driver import buttons, message_text
from telegram_ui.cards import CARD_LIMIT, MACHINE_MARK
from tests.helpers import (
    criterion,
    form_option,
    form_question,
    fragment,
    join,
    label,
    pattern,
    queued_contact,
    seed_project,
    store_speech,
    text,
)

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
        "segments": [{"start": s, "end": s + 2.0, "speaker": who, "text": said} for s, who, said in lines],
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


def transcript_line(speaker: str, said: str) -> str:
    """A line of the transcript as the card shows it: who spoke (promoter, customer), and what they said."""
    return text(
        "card-transcript-line",
        speaker=label(f"speech-speaker-{speaker}"),
        text=html.escape(said, quote=False),
    )


def quoted_check(icon: str, check: str, quote: str, time: str) -> str:
    """A script check's line with the words heard and when (`check`: its name as the card shows it)."""
    return text(
        "card-speech-check-quote", icon=icon, check=check, quote=html.escape(quote, quote=False), time=time
    )


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
    card = await reviewer.skip_to(text("card-title", id=contact_id, project=project.name))
    seen = message_text(card)
    lines = seen.split("\n")
    reasons = "; ".join(
        [
            label("speech-reason-critical-failed", check=label("script-offer")),
            label("speech-reason-unsure", check=label("script-goodbye")),
        ]
    )
    verdict = dict(decision=label("speech-leaning-reject"), percent="62%", reasons=reasons)
    assert text("card-speech-verdict-why", **verdict) in lines
    assert quoted_check("✅", label("script-greeting"), "Здравствуйте", "0:01") in lines
    assert text("card-speech-check", icon="❌", check=label("script-offer")) in lines
    assert quoted_check("❔", label("script-goodbye"), "до свидания", "1:05") in lines
    assert (
        quoted_check("✅", "own item", "Вкусно", "0:02") in lines
    )  # a project's own script item, by its key
    # Telegram's (the stand-in's tdlib) parse of the HTML: one expandable quote, holding every line labelled.
    [(offset, length)] = [(e[1], e[2]) for e in card["_entities"] if e[0] == "expandable_blockquote"]
    quoted = utf16_slice(seen, offset, length).split("\n")
    assert quoted == [transcript_line(who, said) for _, who, said in DIALOGUE]
    assert not pattern("card-transcript-cut").search(seen)
    # The marks the checks said are on the buttons, marked as the machine's; the reviewer can change them.
    await tg.wait_until(lambda: buttons(reviewer.last_state(card)))
    labels = [b["text"] for b in buttons(reviewer.last_state(card))]
    assert labels[:5] == [
        f"✅ {criterion('greeting')} {MACHINE_MARK}",
        f"🔢 {criterion('presentation')}: 3/3 {MACHINE_MARK}",
        f"❌ {criterion('offer')} {MACHINE_MARK}",
        f"▫️ {criterion('politeness')}",
        f"✅ {criterion('real_customer')} {MACHINE_MARK}",
    ]
    assert text("card-marks-prefilled", mark=MACHINE_MARK) in lines
    await reviewer.press(reviewer.last_state(card), f"✅ {criterion('greeting')} {MACHINE_MARK}")
    unmarked = f"❌ {criterion('greeting')}"
    await tg.wait_until(lambda: unmarked in [b["text"] for b in buttons(reviewer.last_state(card))])
    assert (await draft_marks(sessions, contact_id))["greeting"] == 0
    edited = message_text(reviewer.last_state(card))
    assert transcript_line("customer", "Добрый день.") in edited  # the edited card keeps the transcript


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
    card = await reviewer.skip_to(text("card-title", id=contact_id, project=project.name))
    seen = message_text(card)
    lines = seen.split("\n")
    first = transcript_line("promoter", "Реплика 0:")  # the start of the first line
    assert utf16_length(seen) <= CARD_LIMIT
    assert first in seen and "Реплика 399" not in seen
    shown = sum(f"Реплика {i}:" in seen for i in range(400))
    assert 5 <= shown < 400
    assert text("card-transcript-cut", count=400 - shown) in lines
    [quote] = [e for e in card["_entities"] if e[0] == "expandable_blockquote"]
    assert utf16_slice(seen, quote[1], quote[2]).startswith(first)
    # The rating part whole: the checks, the score, the deadline and every button; the answers uncut.
    score = parse_scorecard(DEFAULT_SCORECARD).score(await draft_marks(sessions, contact_id))
    assert text("card-speech-check", icon="❌", check=label("script-offer")) in lines
    assert text("card-score", score=f"{score:.0f}") in lines and fragment("card-deadline") in seen
    assert f"• {form_question('product')}: {form_option('product', 'coffee')}" in lines
    assert not pattern("card-answers-cut").search(seen)
    await tg.wait_until(lambda: buttons(reviewer.last_state(card)))
    labels = [b["text"] for b in buttons(reviewer.last_state(card))]
    assert len(labels) == 5 + 3 + 2 and label("verdict-approve") in labels and label("btn-return") in labels
    # A press edits the card: still within the limit, still shortened the same way.
    await reviewer.press(reviewer.last_state(card), f"▫️ {criterion('politeness')}")
    marked = f"✅ {criterion('politeness')}"
    await tg.wait_until(lambda: marked in [b["text"] for b in buttons(reviewer.last_state(card))])
    edited = message_text(reviewer.last_state(card))
    assert utf16_length(edited) <= CARD_LIMIT and pattern("card-transcript-cut").search(edited)


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
    await rita.skip_to(text("card-title", id=with_speech, project=on.name))
    card = await oleg.skip_to(text("card-title", id=without_speech, project=off.name))
    await tg.wait_until(lambda: buttons(oleg.last_state(card)))
    assert not any(MACHINE_MARK in b["text"] for b in buttons(oleg.last_state(card)))
    assert not pattern("card-marks-prefilled").search(message_text(card))
