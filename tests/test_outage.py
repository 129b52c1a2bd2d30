"""The database unreachable for a while (issue #13): people are told once to wait (their message is kept by
Telegram, since nothing was acknowledged), nothing is half written, and everything resumes by itself.

The bot reaches PostgreSQL through a TCP relay on loopback that the test cuts: connections drop and new
ones are refused, as when the database host goes away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.settings import Settings
from models import Contact
from sandbox.harness import running_bot
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.conftest import USE_POSTGRES
from tests.helpers import asked, form_question, join_as_promoter, seed_project, text

pytestmark = pytest.mark.skipif(not USE_POSTGRES, reason="a database server to lose: PostgreSQL")


class Relay:
    """host:port -> target, byte for byte, until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.pipes |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for pipe in list(self.pipes):
            pipe.transport.abort()  # as a vanished host: no goodbye
        self.pipes.clear()
        await self.server.wait_closed()


@pytest.fixture
async def relay(settings: Settings) -> AsyncIterator[Relay]:
    url = make_url(settings.database_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    await relay.start()
    yield relay
    with contextlib.suppress(Exception):
        await relay.cut()


async def test_an_outage_is_waited_out_and_nothing_is_lost(
    settings: Settings, relay: Relay, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    through = make_url(settings.database_url).set(host="127.0.0.1", port=relay.port)
    flaky = settings.model_copy(update={"database_url": through.render_as_string(hide_password=False)})
    async with running_bot(flaky, start_scheduler=False) as runtime:
        project = await seed_project(sessions)
        promoter = await join_as_promoter(tg, sessions, project)
        await runtime.settled()  # the joining is committed (its reply goes out before its commit)
        await relay.cut()
        await promoter.send_command("new")
        await promoter.expect(text("inbox-unavailable"), timeout=30)  # in the sender's language
        await promoter.send_command("help")  # still down: told once, not for every message
        await asyncio.sleep(3)
        await relay.start()  # back on the same port
        texts = lambda: "\n".join(message_text(m) for m in promoter.bot_messages())  # noqa: E731
        # Both, once the database answers again: the form's first question and the help.
        first = asked(1, 5, form_question("product"))
        help_text = f"{text('help-common')}\n\n{text('help-promoter')}"
        await tg.wait_until(lambda: first in texts() and help_text in texts(), timeout=60)
        await runtime.settled()
    told = [m for m in promoter.bot_messages() if message_text(m) == text("inbox-unavailable")]
    assert len(told) == 1
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Contact)) == 0  # nothing half made
