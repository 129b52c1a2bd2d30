"""A bot process killed with SIGKILL in the middle of an update loses nothing (issue #14 items 1 and 3).

The bot runs as a real subprocess (`python -m bot run`) polling the stand-in. The promoter's recording is
being downloaded when the process is killed; by then Telegram has been told the update arrived (the
stand-in's confirmed offset is past it), so Telegram will not send it again. After a restart the
contact is created and the receipt arrives, from the inbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Contact, InboxUpdate
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.conftest import TOKEN
from tests.helpers import BotProcess, bot_env, count_rows, fill_default_form, join_as_promoter, seed_project


@pytest.fixture
async def bot_process(
    tg: StandIn, migrated_url: str, tmp_path: Path, redis_url: str | None
) -> AsyncIterator[BotProcess]:
    process = BotProcess(bot_env(tg, migrated_url, tmp_path, redis_url), tg, tmp_path / "bot.log")
    await process.start()
    yield process
    await process.stop()


async def test_kill_9_mid_download_then_restart_delivers_the_contact(
    bot_process: BotProcess, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    await fill_default_form(tg, promoter)

    tg.world.download_delay = 3.0  # the recording arrives slowly: the kill lands mid-download
    downloads = len(tg.calls("getFile"))
    update = await promoter.send_voice(audio_dir / "dialogue.ogg")
    await tg.wait_until(lambda: len(tg.calls("getFile")) > downloads, 20)
    await tg.wait_until(lambda: tg.bot(TOKEN).confirmed_below > update["update_id"], 20)
    await bot_process.kill()
    tg.world.download_delay = 0.0

    # What the old bot lost: Telegram was told the update arrived, and no contact exists.
    assert tg.bot(TOKEN).confirmed_below > update["update_id"]
    assert await count_rows(sessions, Contact) == 0
    assert await count_rows(sessions, InboxUpdate) == 1  # kept

    await bot_process.start()
    receipt = await promoter.expect("received", timeout=60)
    [contact] = [c async for c in _contacts(sessions)]
    assert f"#{contact.id}" in message_text(receipt)
    assert contact.form_answers["product"] == "coffee"
    for _ in range(100):  # the handled update leaves the inbox
        if await count_rows(sessions, InboxUpdate) == 0:
            break
        await asyncio.sleep(0.1)
    assert await count_rows(sessions, InboxUpdate) == 0


async def _contacts(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Contact]:
    async with sessions() as session:
        for contact in await session.scalars(select(Contact)):
            yield contact
