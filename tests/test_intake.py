"""Promoter intake over real HTTP with real audio: form with buttons, recording checks, receipts, resends,
restarts mid-form, enrolment and disputes."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.settings import Settings
from infra.storage import LocalAudioStore, sha256_hex
from models import (
    AnalysisState,
    AnalysisTask,
    Audio,
    AudioKind,
    Contact,
    ContactStatus,
    Dispute,
    FlagKind,
    Project,
    Role,
    Verdict,
    VoiceFlag,
    crypto,
)
from models.base import utcnow
from sandbox.harness import running_bot
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.conftest import TOKEN
from tests.helpers import (
    add_review,
    asked,
    count_rows,
    fill_default_form,
    finish_form_from_the_count,
    form_option,
    form_question,
    form_up_to_the_count,
    fragment,
    join_as_promoter,
    label,
    local_redis,
    pattern,
    seed_project,
    text,
)

# The receipt as it first goes out: the contact is queued for review at once. Its id is not known until the
# contact is read back; where it is, the receipt is compared whole (`receipt_of`).
RECEIPT = fragment("intake-receipt", status=label("status-queued"))


def receipt_of(contact_id: int, status: str = "status-queued") -> str:
    return text("intake-receipt", id=contact_id, status=label(status))


async def contacts(sessions: async_sessionmaker[AsyncSession]) -> list[Contact]:
    async with sessions() as session:
        return list(await session.scalars(select(Contact).order_by(Contact.id)))


async def test_form_with_back_then_voice_note_gives_receipt(
    app: object, tg: StandIn, sessions: async_sessionmaker[AsyncSession], settings: Settings, audio_dir: Path
) -> None:
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)

    await promoter.send_text(label("menu-new-contact"))
    question = await promoter.wait_last(asked(1, 5, form_question("product")))
    await promoter.press(question, form_option("product", "tea"))
    await promoter.wait_last(asked(2, 5, form_question("age")))
    await promoter.press(promoter.last(), label("btn-back"))  # changed their mind about the product
    await promoter.wait_last(asked(1, 5, form_question("product")))
    await promoter.press(promoter.last(), form_option("product", "coffee"))
    await promoter.wait_last(asked(2, 5, form_question("age")))
    await promoter.press(promoter.last(), form_option("age", "25_45"))
    await promoter.wait_last(asked(3, 5, form_question("bought")))
    stale = await promoter.press(question, data="f:pick:0:2")  # a late press on question 1 ("Snacks")
    assert (await promoter.callback_answer(stale))["text"] == label("button-invalid")
    await promoter.press(promoter.last(), label("btn-yes"))
    await promoter.wait_last(asked(4, 5, form_question("quantity")))
    await promoter.send_text("lots")
    assert message_text(await promoter.next_message()) == text("form-error-number")
    await promoter.send_text("250")
    assert message_text(await promoter.next_message()) == text("form-error-range", min=0, max=100)
    await finish_form_from_the_count(promoter)

    voice = audio_dir / "dialogue.ogg"
    await promoter.send_voice(voice)
    receipt = await promoter.expect(RECEIPT)

    [contact] = await contacts(sessions)
    assert message_text(receipt) == receipt_of(contact.id)
    phone = contact.form_answers.pop("phone")
    assert contact.form_answers == {"product": "coffee", "age": "25_45", "bought": True, "quantity": 2}
    # The number is stored sealed (customers' personal data at rest), and opens to what was typed.
    assert phone["consent"] is True and "912" not in phone["number"] and phone["number"].startswith("fc1:")
    assert crypto.reveal(phone["number"]) == "+79123456789"
    assert contact.status == ContactStatus.QUEUED and contact.queued_at is not None
    async with sessions() as session:
        audio = (await session.scalars(select(Audio).where(Audio.contact_id == contact.id))).one()
        task = (await session.scalars(select(AnalysisTask).where(AnalysisTask.audio_id == audio.id))).one()
    data = voice.read_bytes()
    assert audio.sha256 == sha256_hex(data) and audio.kind == AudioKind.DIALOGUE
    assert 10 < audio.duration_seconds < 14 and audio.telegram_file_id
    assert LocalAudioStore(settings.storage_root).get(audio.storage_key) == data
    assert task.state == AnalysisState.PENDING


async def test_bad_recordings_are_answered_and_leave_no_contact(
    app: object, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions)
    async with sessions() as session, session.begin():
        stored = await session.get(Project, project.id)
        assert stored is not None
        stored.max_audio_seconds = 60
    promoter = await join_as_promoter(tg, sessions, project)
    await fill_default_form(tg, promoter)

    big = tmp_path / "big.ogg"
    big.write_bytes(b"OggS" + b"\0" * (20 * 1024 * 1024))
    too_long = text("audio-too-long", max="1:00")  # the project's 60 s, as the bot writes it
    cases = [
        (promoter.send_text("here it comes"), text("audio-not-audio")),
        (promoter.send_document(audio_dir / "notes.txt"), text("audio-not-audio")),
        (promoter.send_document(audio_dir / "broken.ogg", mime_type="audio/ogg"), text("audio-undecodable")),
        (promoter.send_audio(audio_dir / "short.mp3"), text("audio-too-short", min="0:10")),
        (promoter.send_voice(audio_dir / "silence.ogg"), text("audio-silent")),
        (promoter.send_voice(audio_dir / "long.ogg", duration=7200), too_long),  # 2 h claimed
        (promoter.send_voice(audio_dir / "long.ogg", duration=12), too_long),  # metadata lies: decoded
        (promoter.send_voice(big, duration=30), text("audio-too-big")),
    ]
    for send, answer in cases:
        await send
        reply = await promoter.next_message(timeout=20)
        assert message_text(reply) == answer
    assert await count_rows(sessions, Contact) == 0
    assert await count_rows(sessions, Audio) == 0

    # Nothing was lost: the form is still there and a good recording completes it.
    await promoter.send_voice(audio_dir / "dialogue.ogg")
    await promoter.expect(RECEIPT)
    [contact] = await contacts(sessions)
    assert contact.form_answers["product"] == "coffee"


async def test_resent_recording_is_flagged_and_redelivery_makes_one_contact(
    app: object, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    await fill_default_form(tg, promoter)
    first_update = await promoter.send_voice(audio_dir / "dialogue.ogg")
    await promoter.expect(RECEIPT)
    # The survey code follows the receipt: the chat is quiet again.
    await promoter.expect(fragment("survey-qr-caption"))
    tg.redeliver(TOKEN, first_update)

    # The same file again a minute later (the receipt did not show, a double send): it is the same contact,
    # and the honest promoter is not flagged for it.
    await fill_default_form(tg, promoter)
    await promoter.send_voice(audio_dir / "dialogue.ogg")
    resend = await promoter.expect(fragment("intake-already-received"))
    [first] = await contacts(sessions)
    assert message_text(resend) == text("intake-already-received", id=first.id)

    # The same file an hour later is an old recording sent as a new contact: flagged for the reviewer.
    async with sessions() as session, session.begin():
        await session.execute(update(Contact).values(submitted_at=utcnow() - dt.timedelta(hours=1)))
    await fill_default_form(tg, promoter)
    await promoter.send_voice(audio_dir / "dialogue.ogg")
    await promoter.expect(RECEIPT)

    first, second = await contacts(sessions)
    async with sessions() as session:
        flags = list(
            await session.scalars(select(VoiceFlag).where(VoiceFlag.kind == FlagKind.DUPLICATE_RECORDING))
        )
    assert [(f.contact_id, f.kind, f.matched_contact_ids) for f in flags] == [
        (second.id, FlagKind.DUPLICATE_RECORDING, [first.id])
    ]
    assert second.priority > first.priority


async def test_restart_mid_form_resumes_it(
    tg: StandIn, sessions: async_sessionmaker[AsyncSession], settings: Settings, audio_dir: Path
) -> None:
    project = await seed_project(sessions)
    async with running_bot(settings, start_scheduler=False):
        promoter = await join_as_promoter(tg, sessions, project)
        await promoter.send_text(label("menu-new-contact"))
        await promoter.wait_last(asked(1, 5, form_question("product")))
        await promoter.press(promoter.last(), form_option("product", "snacks"))
        await promoter.wait_last(asked(2, 5, form_question("age")))
    async with running_bot(settings, start_scheduler=False):  # a new process would see the same
        await promoter.press(promoter.last(), form_option("age", "o45"))
        await promoter.wait_last(asked(3, 5, form_question("bought")))
        await promoter.press(promoter.last(), label("btn-no"))
        await promoter.wait_last(asked(4, 5, form_question("quantity")))
        await promoter.send_text("0")
        await promoter.wait_last(asked(5, 5, form_question("phone")))
        await promoter.press(promoter.last(), label("btn-consent-no"))
        await promoter.wait_last(text("intake-record"))
        await promoter.send_voice(audio_dir / "dialogue.ogg")
        await promoter.expect(RECEIPT)
    [contact] = await contacts(sessions)
    assert contact.form_answers == {
        "product": "snacks",
        "age": "o45",
        "bought": False,
        "quantity": 0,
        "phone": {"consent": False},
    }


async def test_restart_mid_form_with_redis_storage(
    tg: StandIn, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    client = await local_redis("redis://127.0.0.1:6379/15")
    with_redis = settings.model_copy(update={"redis_url": "redis://127.0.0.1:6379/15"})
    project = await seed_project(sessions)
    user_id = 10_000 + uuid.uuid4().int % 1_000_000
    try:
        async with running_bot(with_redis, start_scheduler=False):
            promoter = await join_as_promoter(tg, sessions, project, user_id=user_id)
            await promoter.send_text(label("menu-new-contact"))
            await promoter.wait_last(asked(1, 5, form_question("product")))
            await promoter.press(promoter.last(), form_option("product", "tea"))
            await promoter.wait_last(asked(2, 5, form_question("age")))
        async with running_bot(with_redis, start_scheduler=False):
            await promoter.press(promoter.last(), form_option("age", "u25"))
            await promoter.wait_last(asked(3, 5, form_question("bought")))
        assert await client.exists(*[k async for k in client.scan_iter(f"fsm:*{user_id}*")])
    finally:
        keys = [k async for k in client.scan_iter(f"fsm:*{user_id}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_custom_form_with_multi_choice_text_and_skip(
    app: object, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    from services.forms import parse_form
    from services.projects import set_form

    project = await seed_project(sessions)
    schema = parse_form(
        {
            "questions": [
                {
                    "key": "interests",
                    "type": "multi",
                    "text": {"ru": "Интересы", "en": "Interests"},
                    "options": [
                        {"key": "a", "text": {"en": "Alpha"}},
                        {"key": "b", "text": {"en": "Beta"}},
                        {"key": "c", "text": {"en": "Gamma"}},
                    ],
                },
                {"key": "note", "type": "text", "max_length": 20, "text": {"en": "Note"}},
                {"key": "extra", "type": "text", "optional": True, "text": {"en": "Anything else?"}},
            ]
        }
    )
    async with sessions() as session, session.begin():
        await set_form(session, project.id, schema)
    promoter = await join_as_promoter(tg, sessions, project)
    await promoter.send_command("new")
    await promoter.wait_last(f"{asked(1, 3, 'Interests')}\n{text('intake-hint-multi')}")
    nothing_chosen = await promoter.press(promoter.last(), label("btn-done"))
    assert (await promoter.callback_answer(nothing_chosen))["text"] == label("intake-choose-one")
    await promoter.press(promoter.last(), "Gamma")
    await tg.wait_until(lambda: "✅ Gamma" in str(promoter.last().get("reply_markup")))
    await promoter.press(promoter.last(), "Alpha")
    await tg.wait_until(lambda: "✅ Alpha" in str(promoter.last().get("reply_markup")))
    await promoter.press(promoter.last(), label("btn-done"))
    await promoter.wait_last(f"{asked(2, 3, 'Note')}\n{text('intake-hint-text')}")
    await promoter.send_text("x" * 21)
    assert message_text(await promoter.next_message()) == text("form-error-too-long", max=20)
    await promoter.send_text("friendly")
    await promoter.wait_last(asked(3, 3, "Anything else?"))
    await promoter.press(promoter.last(), label("btn-skip"))
    await promoter.wait_last(text("intake-record"))
    await promoter.send_voice(audio_dir / "dialogue2.ogg")
    await promoter.expect(RECEIPT)
    [contact] = await contacts(sessions)
    assert contact.form_answers == {"interests": ["a", "c"], "note": "friendly", "extra": None}


async def test_enrolment_and_out_of_turn_voice(
    app: object, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    await promoter.send_voice(audio_dir / "short.mp3")
    assert message_text(await promoter.next_message()) == text("audio-too-short", min="0:10")  # 10 s at least
    await promoter.send_voice(audio_dir / "enrol.ogg")
    await promoter.expect(text("enrol-saved"))
    async with sessions() as session:
        [enrolment] = list(await session.scalars(select(Audio).where(Audio.kind == AudioKind.ENROLMENT)))
    assert enrolment.contact_id is None and 20 < enrolment.duration_seconds < 26

    await promoter.send_voice(audio_dir / "dialogue.ogg")  # no form started
    assert message_text(await promoter.next_message()) == text("intake-voice-out-of-turn")
    assert await count_rows(sessions, Contact) == 0


async def _reviewed_contact(
    sessions: async_sessionmaker[AsyncSession],
    project: Project,
    promoter_tg_id: int,
    reviewed_ago: dt.timedelta,
) -> int:
    from models import User

    now = dt.datetime.now(dt.UTC)
    async with sessions() as session, session.begin():
        promoter = await session.scalar(select(User).where(User.telegram_id == promoter_tg_id))
        if promoter is None:
            promoter = User(telegram_id=promoter_tg_id, first_name="Other")
            session.add(promoter)
            await session.flush()
        reviewer = User(telegram_id=promoter_tg_id + 1, first_name="Rita")
        session.add(reviewer)
        contact = Contact(
            project_id=project.id,
            promoter_id=promoter.id,
            status=ContactStatus.REVIEWED,
            score=40.0,
            final_verdict=Verdict.REJECT,
            reviewed_at=now - reviewed_ago,
        )
        session.add(contact)
        await session.flush()
        await add_review(
            session, contact.id, reviewer.id, Verdict.REJECT, now, comment="No product offer heard"
        )
        return contact.id


async def test_dispute_reaches_the_rereview_queue_once(
    app: object, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    contact_id = await _reviewed_contact(sessions, project, promoter.id, dt.timedelta(hours=1))
    old_id = await _reviewed_contact(sessions, project, promoter.id + 10, dt.timedelta(days=5))

    await promoter.send_text(label("menu-my-results"))
    summary = await promoter.next_message()
    feedback = text("my-last-feedback", id=contact_id, score=40, comment="No product offer heard")
    assert feedback in message_text(summary)
    dispute_button = label("my-dispute-button", id=contact_id)
    await promoter.press(summary, dispute_button)
    await promoter.expect(text("dispute-ask-reason", id=contact_id))
    await promoter.send_text("The customer asked about the price, listen at 0:20")
    await promoter.expect(text("dispute-opened", id=contact_id))

    async with sessions() as session:
        dispute = (await session.scalars(select(Dispute))).one()
        contact = await session.get(Contact, contact_id)
    assert (dispute.contact_id, dispute.reason[:12]) == (contact_id, "The customer")
    assert contact is not None and contact.status == ContactStatus.DISPUTED

    again = await promoter.press(summary, dispute_button)
    assert (await promoter.callback_answer(again))["text"] == label("dispute-already")
    forged = await promoter.press(summary, data=f"dsp:{old_id}")  # someone else's contact
    assert (await promoter.callback_answer(forged))["text"] == label("dispute-not-yours")


async def test_receipt_follows_the_contact(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    from jobs import review as review_jobs
    from jobs.receipts import update_receipts
    from tests.helpers import join

    project = await seed_project(sessions)
    async with sessions() as session, session.begin():  # no voice worker here: review need not wait for one
        await session.execute(update(Project).values(analysis_wait_minutes=0))
    promoter = await join_as_promoter(tg, sessions, project)
    await fill_default_form(tg, promoter)
    await promoter.send_voice(audio_dir / "dialogue.ogg")
    receipt = await promoter.expect(RECEIPT)
    [contact] = await contacts(sessions)
    assert message_text(receipt) == receipt_of(contact.id)
    await app.settled()
    assert await update_receipts(app.session_factory, app.i18n) == 0  # nothing changed yet

    await join(tg, sessions, project, Role.REVIEWER, 2901, "Rita")
    assert await review_jobs.dispatch(app.session_factory, app.i18n) == 1
    assert await update_receipts(app.session_factory, app.i18n) == 1
    in_review = receipt_of(contact.id, "status-in-review")
    await tg.wait_until(lambda: message_text(promoter.last_state(receipt)) == in_review)
    assert await update_receipts(app.session_factory, app.i18n) == 0


async def test_not_a_number_is_refused_at_parse_time(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Python's float() reads "nan" and "inf"; a count of items is neither (issue #14, item 10: SQLite stored
    NaN past the range check, PostgreSQL refused the JSON)."""
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    await form_up_to_the_count(promoter)
    for typed in ("nan", "inf", "-Infinity", "1e999"):
        await promoter.send_text(typed)
        # Each refused on its own (the next message, not the last one's refusal), and nothing after it.
        assert message_text(await promoter.next_message()) == text("form-error-number")
        assert message_text(promoter.last()) == text("form-error-number")
    await promoter.send_text("2")
    await promoter.wait_last(asked(5, 5, form_question("phone")))  # the form goes on with a real number


async def test_receipt_survives_a_stop_right_after_the_contact_is_saved(
    tg: StandIn, sessions: async_sessionmaker[AsyncSession], settings: Settings, audio_dir: Path
) -> None:
    """Telegram refuses the receipt (502s) and the bot is stopped: after the restart the receipt arrives.
    Before, the receipt was sent after the commit outside the outbox and was lost with the process; the
    promoter's resend then made a flagged duplicate of their own contact."""
    project = await seed_project(sessions)
    async with running_bot(settings, start_scheduler=False):
        promoter = await join_as_promoter(tg, sessions, project)
        await fill_default_form(tg, promoter)
        tg.fail_next("sendMessage", status=502, times=1000)
        tried = len(tg.calls("sendMessage"))
        await promoter.send_voice(audio_dir / "dialogue.ogg")
        await tg.wait_until(lambda: len(tg.calls("sendMessage")) > tried)  # the outbox tried: it is committed
    tg.world.faults.clear()
    assert not any(pattern("intake-receipt").search(message_text(m)) for m in promoter.bot_messages())
    async with running_bot(settings, start_scheduler=False):
        receipt = await promoter.expect(RECEIPT, timeout=20)
    [contact] = await contacts(sessions)
    assert message_text(receipt) == receipt_of(contact.id)


async def test_a_slow_download_holds_up_nobody_else(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    """Issue #12 item 1: the recording downloads and decodes with no transaction open, so on SQLite no write
    lock (and on PostgreSQL no connection idle in transaction) is held while it arrives: another person's
    update is answered meanwhile, not after it. The contact is still written once, with its receipt."""
    project = await seed_project(sessions)
    slow = await join_as_promoter(tg, sessions, project)
    other = await join_as_promoter(tg, sessions, project, user_id=2002)
    await fill_default_form(tg, slow)
    tg.world.download_delay = 3.0  # a slow mobile network
    await slow.send_voice(audio_dir / "dialogue.ogg")
    await tg.wait_until(lambda: tg.world.downloads_in_flight == 1, timeout=10)
    await other.send_command("help")
    await other.expect(f"{text('help-common')}\n\n{text('help-promoter')}", timeout=10)
    assert tg.world.downloads_in_flight == 1  # answered while the recording was still arriving
    await slow.expect(RECEIPT, timeout=20)
    tg.world.download_delay = 0.0
    await app.settled()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Contact)) == 1


async def test_a_slow_enrolment_download_holds_up_nobody_else(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    """The same for the voice sample a promoter records on joining: it arrives with no transaction open."""
    project = await seed_project(sessions)
    slow = await join_as_promoter(tg, sessions, project)  # the enrolment prompt is waiting for a voice note
    other = await join_as_promoter(tg, sessions, project, user_id=2002)
    tg.world.download_delay = 3.0
    await slow.send_voice(audio_dir / "enrol.ogg")
    await tg.wait_until(lambda: tg.world.downloads_in_flight == 1, timeout=10)
    await other.send_command("help")
    await other.expect(f"{text('help-common')}\n\n{text('help-promoter')}", timeout=10)
    assert tg.world.downloads_in_flight == 1  # answered while the voice sample was still arriving
    await slow.expect(text("enrol-saved"), timeout=20)
    tg.world.download_delay = 0.0
    await app.settled()
    async with sessions() as session:
        kinds = (await session.scalars(select(Audio.kind))).all()
    assert list(kinds) == [AudioKind.ENROLMENT]
