"""Managers against what the real Bot API does (issue #27, findings 1, 2, 10 and 18).

- Privacy mode (finding 1): in a group a bot with privacy mode on (BotFather's default, getMe's
  can_read_all_group_messages false) receives only commands, replies to its own messages and service
  messages; an admin bot, or one with privacy mode off, everything (https://core.telegram.org/bots/features
  #privacy-mode; the Telegram server filters, telegram-bot-api Client.cpp JsonUser only reports the flag).
  The stand-in filters the same way (telegram_standin/state.py World.reaches_bot), and "Resolved" in a
  managers' group must work in every mode: its note is asked with a ForceReply the manager's app answers
  as a reply, and the wait for it ends.
- Upload limit (finding 2): bots upload at most 50 MB; api.telegram.org answers more with 413 "Request
  Entity Too Large" (telegram-bot-api README: only --local servers take up to 2000 MB; the server's own
  cap, tdlib tdnet/td/net/HttpReader.cpp read_next, is far higher). The stand-in refuses the same
  (state.UPLOAD_LIMIT_BYTES, server.BotApi.handle_method), and an export over it goes zipped or in parts.
  The conformance test uploads a real file just over 50 MiB; the bot's tests lower both knobs
  (World.upload_limit_bytes, Settings.export_max_file_bytes) to keep the seeded data small.
- "Open contact" of a long form fits Telegram's 4096 characters and loses nothing (finding 10).
- /newproject splits "Company / Project" at " / " and says which name is which (finding 18).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import secrets
import zipfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramEntityTooLarge
from aiogram.methods import GetUpdates
from aiogram.types import ForceReply, FSInputFile
from openpyxl import load_workbook
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import handlers.manager as manager_handlers
from bot.app import Runtime
from infra.settings import Settings
from models import AlertStatus, Contact, ManagerAlert, Organisation, Project, Role, User
from models.base import utcnow
from models.payloads import SlaStreak
from services.alerts import AlertRequest
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import message_text
from telegram_standin.state import UPLOAD_LIMIT_BYTES
from telegram_ui.alert_cards import raise_and_send
from tests.conftest import TOKEN
from tests.helpers import add_contact, fragment, join, label, pattern, seed_project, text

GROUP = -1002001
# The tests' stand-in for Telegram's 50 MB, and the bot's largest file under it (1 MiB less in production).
TEST_UPLOAD_LIMIT = 120_000
TEST_EXPORT_FILE = 100_000
EXPORT_ROWS = 3000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"export_max_file_bytes": TEST_EXPORT_FILE})


# -- the stand-in as the real server -------------------------------------------------------------------
async def test_privacy_mode_decides_what_a_group_delivers(tg: StandIn, raw_bot: Bot) -> None:
    """Privacy mode on: commands (plain, or addressed to this bot), replies to the bot's own messages;
    not the conversation, nor a command for another bot, nor a reply to a person. Admin, or privacy mode
    off (getMe then says can_read_all_group_messages true): everything."""
    me = await raw_bot.get_me()
    assert me.can_read_all_group_messages is False
    ann = tg.user(31, "Ann", token=TOKEN)
    group = tg.group(-1003001, "Managers", token=TOKEN)
    prompt = await raw_bot.send_message(group.chat_id, "Why?", reply_markup=ForceReply(force_reply=True))
    chatter = await group.send_text(ann, "hello everyone")
    await group.send_text(ann, "/report")
    await group.send_text(ann, f"/report@{me.username}")
    await group.send_text(ann, "/report@some_other_bot")
    await group.send_text(ann, "because", reply_to={"message_id": prompt.message_id})
    await group.send_text(ann, "agreed", reply_to=chatter["message"])
    assert "update_id" not in chatter  # Telegram never told the bot
    updates = await raw_bot(GetUpdates(timeout=0))
    assert [u.message.text for u in updates if u.message] == ["/report", f"/report@{me.username}", "because"]
    offset = updates[-1].update_id + 1

    group.set_bot_admin()
    await group.send_text(ann, "the bot is an admin now")
    group.set_bot_admin(False)
    tg.set_privacy_mode(TOKEN, False)
    assert (await raw_bot.get_me()).can_read_all_group_messages is True
    await group.send_text(ann, "privacy mode is off now")
    updates = await raw_bot(GetUpdates(offset=offset, timeout=0))
    assert [u.message.text for u in updates if u.message] == [
        "the bot is an admin now",
        "privacy mode is off now",
    ]


async def test_an_upload_over_50_mb_is_refused_with_413(tg: StandIn, raw_bot: Bot, tmp_path: Path) -> None:
    """A real file one byte over 50 MiB: 413 "Request Entity Too Large" (aiogram TelegramEntityTooLarge),
    nothing stored; a smaller one goes."""
    ann = tg.user(32, "Ann", token=TOKEN)
    big = tmp_path / "big.csv"
    with big.open("wb") as handle:
        handle.truncate(UPLOAD_LIMIT_BYTES + 1)
    with pytest.raises(TelegramEntityTooLarge, match="Request Entity Too Large"):
        await raw_bot.send_document(ann.id, FSInputFile(big))
    assert ann.bot_messages() == []
    small = tmp_path / "small.csv"
    small.write_bytes(b"a,b\n" * 1000)
    sent = await raw_bot.send_document(ann.id, FSInputFile(small))
    assert sent.document is not None and sent.document.file_size == 4000


# -- the bot ---------------------------------------------------------------------------------------------
async def _project(sessions: async_sessionmaker[AsyncSession], **values: Any) -> Project:
    project = await seed_project(sessions)
    if values:
        async with sessions() as session, session.begin():
            await session.execute(update(Project).where(Project.id == project.id).values(**values))
    return project


async def _raise_alert(
    app: Runtime,
    sessions: async_sessionmaker[AsyncSession],
    project: Project,
    answers: dict[str, Any],
    promoter_id: int = 8400,
) -> tuple[int, int]:
    """An alert about a contact (its SLA ran out with three reviewers), sent to the project's managers."""
    async with sessions() as session, session.begin():
        promoter = User(telegram_id=promoter_id, first_name="Pavel")
        session.add(promoter)
        await session.flush()
        contact, _ = await add_contact(session, project.id, promoter.id)
        contact.form_answers = answers
        alert = await raise_and_send(
            session,
            app.i18n,
            AlertRequest(project.id, SlaStreak(count=3), contact.id, dedupe_key=f"sla:{contact.id}:3"),
        )
        assert alert is not None
        return alert.id, contact.id


async def _alert(sessions: async_sessionmaker[AsyncSession], alert_id: int) -> ManagerAlert:
    async with sessions() as session:
        alert = await session.get(ManagerAlert, alert_id)
        assert alert is not None
        return alert


@pytest.mark.parametrize("mode", ["privacy mode on", "bot is admin", "privacy mode off"])
async def test_resolved_in_a_managers_group_works_in_every_mode(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], mode: str
) -> None:
    project = await _project(sessions, managers_chat_id=GROUP)
    group = tg.group(GROUP, "Managers", token=TOKEN)
    if mode == "bot is admin":
        group.set_bot_admin()
    elif mode == "privacy mode off":
        tg.set_privacy_mode(TOKEN, False)
    maria = await join(tg, sessions, project, Role.MANAGER, 3101, "Maria")
    oleg = tg.user(3199, "Oleg", token=TOKEN, language_code="en")  # in the group, no role

    # Maria presses Resolved and types the note: her app answers the ForceReply prompt as a reply.
    alert_id, contact_id = await _raise_alert(app, sessions, project, {"product": "coffee"}, 8401)
    sla = text("alert-sla", "ru", id=contact_id, project=project.name, count=3)
    alert_msg = await group.expect(sla)  # a group gets the default language
    await group.press(maria, alert_msg, label("btn-alert-resolve", "ru"))
    minutes = manager_handlers.RESOLVE_NOTE_MINUTES
    prompt = await group.expect(text("alert-resolve-prompt", name="Maria", id=alert_id, minutes=minutes))
    assert prompt["_keyboard"] == {  # in the presser's language; selective: Maria is mentioned in the prompt
        "force_reply": True,
        "selective": True,
        "input_field_placeholder": label("alert-resolve-placeholder"),
    }
    await group.send_text(oleg, "Has anyone seen the reviewers today?")  # another member talks
    sent = await group.type_text(maria, "Called the reviewers back on shift")
    assert sent["message"]["reply_to_message"]["message_id"] == prompt["message_id"]
    await group.expect(text("alert-resolved-you", id=alert_id))
    alert = await _alert(sessions, alert_id)
    assert alert.status == AlertStatus.RESOLVED
    assert alert.resolution_note == "Called the reviewers back on shift"
    await tg.wait_until(lambda: "Called the reviewers back" in message_text(group.last_state(alert_msg)))

    # Maria talks in the group first, then replies to the prompt herself: only the reply is the note (with
    # privacy mode on the talk never reaches the bot; otherwise it does, and is left alone).
    alert_id, contact_id = await _raise_alert(app, sessions, project, {"product": "tea"}, 8402)
    alert_msg = await group.expect(text("alert-sla", "ru", id=contact_id, project=project.name, count=3))
    await group.press(maria, alert_msg, label("btn-alert-resolve", "ru"))
    prompt = await group.expect(text("alert-resolve-prompt", name="Maria", id=alert_id, minutes=minutes))
    await group.send_text(maria, "Back in five minutes, everyone")
    await app.settled()
    assert (await _alert(sessions, alert_id)).status == AlertStatus.OPEN
    await group.send_text(maria, "Pavel retrained", reply_to=prompt)
    await group.expect(text("alert-resolved-you", id=alert_id))
    assert (await _alert(sessions, alert_id)).resolution_note == "Pavel retrained"


async def test_an_unanswered_note_prompt_does_not_wait_for_ever(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past RESOLVE_NOTE_MINUTES a message is no longer taken as the note: the manager is told, the alert
    stays open, and the bot stops waiting (the next message is an ordinary one)."""
    project = await _project(sessions)
    maria = await join(tg, sessions, project, Role.MANAGER, 3102, "Maria")
    alert_id, contact_id = await _raise_alert(app, sessions, project, {"product": "coffee"})
    alert_msg = await maria.expect(text("alert-sla", id=contact_id, project=project.name, count=3))
    await maria.press(alert_msg, label("btn-alert-resolve"))
    await maria.expect(fragment("alert-resolve-prompt", id=alert_id))

    later = utcnow() + dt.timedelta(minutes=manager_handlers.RESOLVE_NOTE_MINUTES + 1)
    monkeypatch.setattr(manager_handlers, "utcnow", lambda: later)
    await maria.send_text("What time is the digest?")
    await maria.expect(text("alert-resolve-expired", id=alert_id, minutes=30))
    await maria.send_text("What time is the digest?")
    await maria.expect(text("fallback-message"))
    await app.settled()
    alert = await _alert(sessions, alert_id)
    assert alert.status == AlertStatus.OPEN and alert.resolution_note is None


async def test_open_contact_of_a_long_form_fits_and_loses_nothing(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Ten questions of 120 characters with answers of 1000: one card would be over 4096 characters
    ("message is too long"). The whole form comes first, in messages that fit, then the card."""
    questions = [
        {
            "key": f"q{n}",
            "type": "text",
            "max_length": 1000,
            "text": {"ru": f"Вопрос {n}: " + "я" * 100, "en": f"Question {n}: " + "w" * 106},
        }
        for n in range(10)
    ]
    answers = {f"q{n}": f"answer {n} begins " + "x" * 960 + f" answer {n} ends" for n in range(10)}
    project = await _project(sessions, form_schema={"questions": questions})
    maria = await join(tg, sessions, project, Role.MANAGER, 3103, "Maria")
    _alert_id, contact_id = await _raise_alert(app, sessions, project, answers)
    alert_msg = await maria.expect(text("alert-sla", id=contact_id, project=project.name, count=3))
    await maria.press(alert_msg, label("btn-alert-open"))
    card = await maria.skip_to(text("card-title", id=contact_id, project=project.name))
    shown = [message_text(m) for m in maria.bot_messages()]
    before_card = shown[: shown.index(message_text(card))]
    assert any(text("card-full-form", id=contact_id) in shown_text for shown_text in before_card)
    everything = "\n".join(before_card)
    for answer in answers.values():
        assert answer in everything  # every answer whole, none cut
    assert pattern("card-answers-cut").search(message_text(card)) or "…" in message_text(card)
    assert all(len(piece.encode("utf-16-le")) // 2 <= 4096 for piece in shown)


async def _seed_export(sessions: async_sessionmaker[AsyncSession], project: Project) -> set[int]:
    """EXPORT_ROWS contacts submitted yesterday (local), each with a store name of random letters (so that
    the file compresses only so far)."""
    yesterday = utcnow().astimezone(ZoneInfo(project.timezone)).date() - dt.timedelta(days=1)
    when = dt.datetime.combine(yesterday, dt.time(12), ZoneInfo(project.timezone))
    async with sessions() as session, session.begin():
        promoter = User(telegram_id=8500, first_name="Pavel")
        session.add(promoter)
        await session.flush()
        contacts = [
            Contact(
                project_id=project.id,
                promoter_id=promoter.id,
                form_answers={"store": secrets.token_hex(20)},
                submitted_at=when,
            )
            for _ in range(EXPORT_ROWS)
        ]
        session.add_all(contacts)
        await session.flush()
        return {c.id for c in contacts}


async def _status(
    tg: StandIn, manager: UserClient, text: str, *, after: int = 0, timeout: float = 10
) -> dict[str, Any]:
    """The export's status message (edited in place above its documents) once it says `text`; only
    messages from the `after`-th on."""

    def found() -> dict[str, Any] | None:
        return next((m for m in manager.bot_messages()[after:] if text in message_text(m)), None)

    await tg.wait_until(found, timeout)
    status = found()
    assert status is not None
    return status


async def _export(manager: UserClient, fmt: str) -> None:
    await manager.send_command("export")
    await manager.expect(text("export-choose-period"))
    await manager.press(manager.last(), label("period-week"))
    await manager.wait_last(text("export-choose-format"))
    await manager.press(manager.last(), fmt)


async def test_an_export_over_the_upload_limit_goes_zipped_or_in_parts(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tg.world.upload_limit_bytes = TEST_UPLOAD_LIMIT  # Telegram's 50 MB, scaled down with the bot's setting
    project = await _project(sessions)
    ids = await _seed_export(sessions, project)
    maria = await join(tg, sessions, project, Role.MANAGER, 3104, "Maria")

    # CSV: about 280 KB of text, over the limit; zipped it fits, and the manager is told.
    await _export(maria, "CSV")
    document = await maria.expect(fragment("export-ready", rows=EXPORT_ROWS))
    name = document["document"]["file_name"]
    stored = tg.world.files[document["document"]["file_id"]]
    assert name.endswith(".zip") and stored.size <= TEST_EXPORT_FILE
    with zipfile.ZipFile(stored.path) as bundle:
        [inner] = bundle.namelist()
        csv_text = bundle.read(inner).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(csv_text)))
    assert rows[0][0] == "Contact" and {int(r[0]) for r in rows[1:]} == ids
    done = text("export-done", rows=EXPORT_ROWS)
    await _status(tg, maria, f"{done}\n{text('export-done-zipped')}")

    # XLSX is a zip already: in parts of whole rows, each a workbook with its header, all rows once.
    before = len(maria.bot_messages())
    await _export(maria, "XLSX")
    status = await _status(tg, maria, f"{done}\n{fragment('export-done-parts')}", after=before, timeout=30)
    parts = [
        m
        for m in maria.bot_messages()[before:]
        if str((m.get("document") or {}).get("file_name", "")).endswith("xlsx")
    ]
    assert len(parts) >= 2 and text("export-done-parts", parts=len(parts)) in message_text(status)
    assert [message_text(m).splitlines()[0] for m in parts] == [
        text("export-part", part=n, parts=len(parts)) for n in range(1, len(parts) + 1)
    ]
    seen: list[int] = []
    for part in parts:
        stored = tg.world.files[part["document"]["file_id"]]
        assert stored.size <= TEST_EXPORT_FILE
        sheet = load_workbook(stored.path, read_only=True).active
        assert sheet is not None
        values = list(sheet.iter_rows(values_only=True))
        assert values[0][0] == "Contact"
        seen += [int(row[0]) for row in values[1:]]  # type: ignore[arg-type]
    assert sorted(seen) == sorted(ids)


async def test_newproject_splits_at_the_spaced_slash_and_names_both(
    app: Runtime, admin: UserClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await admin.send_command("newproject", "A/B Foods / Tasting")
    await admin.expect(fragment("newproject-created", "ru", org="A/B Foods", project="Tasting"))
    await admin.send_command("newproject", "A/B/Foods")  # no " / " and several slashes: which is which?
    await admin.expect(text("newproject-usage", "ru"))
    await app.settled()
    async with sessions() as session:
        rows = (await session.execute(select(Organisation.name, Project.name).join(Project))).all()
    assert [tuple(r) for r in rows] == [("A/B Foods", "Tasting")]
