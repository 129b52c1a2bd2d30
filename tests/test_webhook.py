"""Webhook mode: the stand-in pushes updates with the secret token; a wrong secret is refused."""

from __future__ import annotations

import socket

import aiohttp
import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import LogCapture

import bot.inbox
from bot.app import build_runtime, start_webhook_server
from infra.settings import Settings
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.conftest import TOKEN
from tests.helpers import text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_webhook_receives_updates_once_and_checks_secret(
    tg: StandIn, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    hooked = settings.model_copy(
        update={
            "webhook_base_url": f"http://127.0.0.1:{port}",
            "webhook_host": "127.0.0.1",
            "webhook_port": port,
            "webhook_secret": SecretStr("s3cret-token"),
        }
    )
    runtime = await build_runtime(hooked)
    runner = await start_webhook_server(runtime)
    try:
        assert tg.bot(TOKEN).webhook_url == f"http://127.0.0.1:{port}/telegram/webhook"
        ann = tg.user(701, "Ann", token=TOKEN, language_code="en")
        update = await ann.send_command("help")
        assert message_text(await ann.next_message()) == text("help-common")

        tg.redeliver(TOKEN, update)
        await ann.send_command("lang")
        await ann.expect(text("lang-choose"))
        assert sum(message_text(m) == text("help-common") for m in ann.bot_messages()) == 1

        async with aiohttp.ClientSession() as http:
            forged = {"update_id": 99999, "message": update["message"]}
            url = f"http://127.0.0.1:{port}/telegram/webhook"
            logs = LogCapture()  # the module's own logger, so a logger cached by earlier tests cannot hide it
            monkeypatch.setattr(bot.inbox, "log", structlog.wrap_logger(None, processors=[logs]))
            async with http.post(
                url, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "forged-s3cret"}
            ) as resp:
                assert resp.status == 401
            async with http.post(url, json=forged) as resp:  # no secret header at all
                assert resp.status == 401
            secret = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
            async with http.post(url, data=b"{not json", headers=secret) as resp:
                assert resp.status == 400
            refusals = [e for e in logs.entries if e["event"] == "webhook_refused"]
            assert [e["reason"] for e in refusals] == [
                "secret header wrong",
                "secret header missing",
                "body is not JSON",
            ]
            assert "forged-s3cret" not in str(refusals)  # the header's value is never logged
            await runtime.inbox.wait_handled()  # every accepted update handled and out of the inbox
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                body = await resp.json()
                assert resp.status == 200 and body["ok"] is True and body["inbox_pending"] == 0
    finally:
        await runner.cleanup()
        await runtime.close()
