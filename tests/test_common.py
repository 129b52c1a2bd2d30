"""Everyday commands: language choice persists, help depends on role, out-of-turn input is answered."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.settings import Settings
from models import User
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import message_text
from tests.conftest import TOKEN
from tests.helpers import label, text


def test_settings_parse_admin_ids_from_env(monkeypatch: object) -> None:
    settings = Settings(_env_file=None, admin_ids="11, 22;33")
    assert settings.admin_ids == [11, 22, 33]
    assert Settings(_env_file=None).default_locale == "ru"


async def test_language_choice_is_stored_and_used(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ivan = tg.user(801, "Ivan", token=TOKEN, language_code="ru")
    await ivan.send_command("lang")
    choice = await ivan.next_message()
    await ivan.press(choice, "English")
    await tg.wait_until(lambda: message_text(ivan.last()) == text("lang-set"))
    await app.settled()
    async with sessions() as session:
        assert await session.scalar(select(User.locale).where(User.telegram_id == 801)) == "en"
    await ivan.send_command("start")
    greeting = await ivan.expect(text("start-welcome", name="Ivan"))
    assert message_text(greeting) == "\n".join(
        [text("start-welcome", name="Ivan"), text("start-no-roles"), text("start-help-hint")]
    )

    forged = await ivan.press(choice, data="lang:de")
    assert (await ivan.callback_answer(forged))["text"] == label("button-invalid")


async def test_help_shows_admin_commands_only_to_admins(app: Runtime, tg: StandIn, admin: UserClient) -> None:
    await admin.send_command("help")
    assert "/invite" in message_text(await admin.next_message())
    someone = tg.user(802, "Olga", token=TOKEN, language_code="ru")
    await someone.send_command("help")
    reply = message_text(await someone.next_message())
    assert "/lang" in reply and "/invite" not in reply


async def test_message_out_of_turn_is_answered(app: Runtime, tg: StandIn, tmp_path: object) -> None:
    olga = tg.user(803, "Olga", token=TOKEN, language_code="en")
    await olga.send_text("hello, is anyone there?")
    assert message_text(await olga.next_message()) == text("fallback-message")
    await olga.send_contact("+70000000000")
    assert message_text(await olga.next_message()) == text("fallback-message")
