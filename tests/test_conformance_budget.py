"""Issue #27, findings 9, 12 and 16: what real Telegram and a real start-up do that the tests had not shown.

- 12: every message the bot sends (answers and outbox together) stays within one budget a second
  (bot/send_budget.py), answers to a person's own press or message first.
- 9: several processes calling setWebhook together meet telegram-bot-api's 429 (a second URL within a
  second) and 409 "Conflict: terminated by other setWebhook" (a call still verifying when another arrives),
  as in telegram-bot-api/Client.cpp, Client::process_set_webhook_query; the bot retries both.
- 16: `fieldcheck run` with its database unreachable keeps trying with back-off, logs each try once, and
  says "not ready" on /healthz meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import LogCapture

import bot.app
from bot.app import build_runtime, start_webhook_server
from bot.send_budget import BACKGROUND, FOREGROUND, SendBudget, budget_of, counts_as_message
from infra.messages import SendText
from infra.outbox import enqueue
from infra.settings import Settings
from sandbox.harness import running_bot
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.conftest import TOKEN
from tests.helpers import BotProcess, bot_env, free_port, spawn_bot


def _busiest_second(tg: StandIn, since: int) -> int:
    """Most calls that send or edit a message arriving at the stand-in within any one second."""
    times = sorted(at for at, method, _chat in tg.world.call_times[since:] if counts_as_message(method))
    busiest, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


# -- finding 12: one send budget -----------------------------------------------------------------------
async def test_a_burst_of_answers_stays_within_the_send_budget(tg: StandIn, settings: Settings) -> None:
    """40 people writing at once: each is answered, and no second holds more than the budget's messages
    (before, direct answers had no budget at all: bench/load.py saw 116 new messages in one second)."""
    budgeted = settings.model_copy(update={"send_budget_per_second": 10})
    people = [tg.user(7300 + n, f"P{n}", token=TOKEN, language_code="en") for n in range(40)]
    async with running_bot(budgeted, start_scheduler=False):
        started = len(tg.world.call_times)
        await asyncio.gather(*(person.send_command("help") for person in people))
        for person in people:
            await person.expect("/lang", 60)
        assert _busiest_second(tg, started) <= 10


async def test_the_outbox_and_the_answers_share_one_budget(tg: StandIn, settings: Settings) -> None:
    """Outbox messages to 20 chats and answers to 20 people at the same moment: all arrive, and together
    they stay within the one budget."""
    budgeted = settings.model_copy(update={"send_budget_per_second": 10})
    writers = [tg.user(7400 + n, f"W{n}", token=TOKEN, language_code="en") for n in range(20)]
    notified = [tg.user(7500 + n, f"N{n}", token=TOKEN, language_code="en") for n in range(20)]
    async with running_bot(budgeted, start_scheduler=False) as runtime:
        budget = budget_of(runtime.bot)
        assert budget is not None and budget_of(runtime.outbox.bot) is budget
        started = len(tg.world.call_times)
        async with runtime.session_factory() as session, session.begin():
            for person in notified:
                await enqueue(session, person.id, SendText(text="a notice"))
        await asyncio.gather(*(person.send_command("help") for person in writers))
        for person in writers:
            await person.expect("/lang", 60)
        for person in notified:
            await person.expect("a notice", 60)
        assert _busiest_second(tg, started) <= 10
        assert budget.taken[FOREGROUND] >= 20 and budget.taken[BACKGROUND] >= 20


async def _send(
    budget: SendBudget, order: list[str], kind: str, priority: int, hold: asyncio.Event | None = None
) -> None:
    async with budget.slots(1, priority):
        order.append(kind)
        if hold is not None:
            await hold.wait()


async def test_answers_go_before_the_outbox_which_keeps_its_floor() -> None:
    """With every slot taken, a waiting answer gets the next free slot before a waiting outbox message; the
    outbox's floor (slots answers never take away) still lets it through during a flood of answers."""
    order: list[str] = []
    budget, release = SendBudget(2, reserve=0, background_floor=0, window=0.01), asyncio.Event()
    holders = [asyncio.create_task(_send(budget, order, f"held{n}", FOREGROUND, release)) for n in range(2)]
    await asyncio.sleep(0)
    assert budget.room(FOREGROUND) == 0
    outbox = asyncio.create_task(_send(budget, order, "outbox", BACKGROUND))
    await asyncio.sleep(0)
    answer = asyncio.create_task(_send(budget, order, "answer", FOREGROUND))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*holders, outbox, answer)
    assert order == ["held0", "held1", "answer", "outbox"]

    order = []
    budget, release = SendBudget(3, reserve=1, background_floor=1, window=0.01), asyncio.Event()
    flood = [asyncio.create_task(_send(budget, order, f"a{n}", FOREGROUND, release)) for n in range(3)]
    await asyncio.sleep(0)
    queued = [asyncio.create_task(_send(budget, order, f"b{n}", FOREGROUND)) for n in range(5)]
    notice = asyncio.create_task(_send(budget, order, "outbox", BACKGROUND))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*flood, *queued, notice)
    assert order.index("outbox") < order.index("b4")  # not last behind every answer: its floor


# -- finding 9: setWebhook from processes starting together ---------------------------------------------
async def _call(http: aiohttp.ClientSession, tg: StandIn, method: str, **params: Any) -> tuple[int, Any]:
    async with http.post(f"{tg.base_url}/bot{TOKEN}/{method}", json=params) as resp:
        return resp.status, await resp.json()


async def test_standin_set_webhook_answers_as_telegram_bot_api(tg: StandIn) -> None:
    """telegram-bot-api/Client.cpp, Client::process_set_webhook_query: a URL within a second of the last
    gets 429 "Too Many Requests: retry after 1" (Query::set_retry_after_error, with retry_after 1); a call
    still being verified when another arrives answers 409 "Conflict: terminated by other setWebhook"; the
    same URL again answers at once."""
    url = f"http://127.0.0.1:{free_port()}/hook"
    async with aiohttp.ClientSession() as http:
        assert (await _call(http, tg, "setWebhook", url=url))[0] == 200
        status, body = await _call(http, tg, "setWebhook", url=url)
        assert status == 429
        assert body == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
        account = tg.bot(TOKEN)
        while time.monotonic() < account.next_set_webhook_at:  # noqa: ASYNC110 - the server's own clock
            await asyncio.sleep(0.05)
        assert (await _call(http, tg, "setWebhook", url=url))[0] == 200  # already set: no verification
        while time.monotonic() < account.next_set_webhook_at:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        tg.world.webhook_verify_seconds = 30.0
        first = asyncio.create_task(_call(http, tg, "setWebhook", url=url + "2"))
        async with asyncio.timeout(10):
            while account.webhook_verifying is None:  # noqa: ASYNC110 - the stand-in's state, no event
                await asyncio.sleep(0.01)
        while time.monotonic() < account.next_set_webhook_at:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        tg.world.webhook_verify_seconds = 0.0
        assert (await _call(http, tg, "setWebhook", url=url + "3"))[0] == 200
        status, body = await first
        assert status == 409
        assert body == {
            "ok": False,
            "error_code": 409,
            "description": "Conflict: terminated by other setWebhook",
        }
        assert account.webhook_url == url + "3"
        await _call(http, tg, "deleteWebhook")


async def test_two_processes_setting_the_webhook_together_both_start(
    tg: StandIn, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two bot processes behind one URL start at once: one gets 429 and then, retrying while the other's
    setWebhook is being verified, makes that one answer 409. Before, the 409 ended the start."""
    first_port, second_port = free_port(), free_port()
    shared = {
        "webhook_base_url": f"http://127.0.0.1:{first_port}",  # the balancer's address: here the first's
        "webhook_host": "127.0.0.1",
        "webhook_secret": SecretStr("s3cret-token"),
    }
    first = await build_runtime(settings.model_copy(update={**shared, "webhook_port": first_port}))
    second = await build_runtime(settings.model_copy(update={**shared, "webhook_port": second_port}))
    tg.world.webhook_verify_seconds = 2.0  # Telegram reaching the URL: long enough for the other's retry
    logs = LogCapture()
    monkeypatch.setattr(bot.app, "log", structlog.wrap_logger(None, processors=[logs]))
    runners = []
    try:
        started = await asyncio.gather(
            start_webhook_server(first), start_webhook_server(second), return_exceptions=True
        )
        runners = [r for r in started if not isinstance(r, BaseException)]
        assert len(runners) == 2, started
        reasons = {e["reason"] for e in logs.entries if e["event"] == "webhook_set_retry"}
        assert {"flood limit", "terminated by another setWebhook"} <= reasons
        assert tg.bot(TOKEN).webhook_url == f"http://127.0.0.1:{first_port}/telegram/webhook"
        ann = tg.user(7601, "Ann", token=TOKEN, language_code="en")
        await ann.send_command("help")
        assert "/lang" in message_text(await ann.next_message())
    finally:
        for runner in runners:
            await runner.cleanup()
        await first.close()
        await second.close()


# -- finding 16: the database unreachable at start ------------------------------------------------------
def _events(log: Path, name: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with_event = json.loads(line)
            if with_event.get("event") == name:
                found.append(with_event)
    return found


async def test_run_waits_for_an_unreachable_database_and_says_not_ready(
    tg: StandIn, tmp_path: Path, redis_url: str | None
) -> None:
    """`fieldcheck run` started while its database cannot be opened (here: its directory is a file) keeps
    trying with back-off, logs each try once (`database_unreachable`, numbered), answers 503 "not ready" on
    /healthz meanwhile, and once the database can be reached migrates it and answers people."""
    blocker = tmp_path / "db-not-mounted"
    blocker.write_text("not a directory")
    port = free_port()
    env = bot_env(
        tg,
        f"sqlite+aiosqlite:///{blocker / 'fieldcheck.db'}",
        tmp_path,
        redis_url,
        HEALTH_PORT=str(port),
        HEALTH_HOST="127.0.0.1",
        LOG_FORMAT="json",
    )
    env["MIGRATE_ON_START"] = "true"  # the bot makes its schema once the database is there
    log = tmp_path / "bot.log"
    process = BotProcess(env, tg, log)
    proc = process.proc = await spawn_bot("run", env=env, log=process.log)
    try:
        async with aiohttp.ClientSession() as http:
            body: dict[str, Any] = {}
            async with asyncio.timeout(60):
                while len(_events(log, "database_unreachable")) < 2:
                    assert proc.returncode is None, log.read_text()  # it did not give up
                    await asyncio.sleep(0.1)
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                            status, body = resp.status, await resp.json()
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
            assert status == 503
            assert body["ok"] is False and body["ready"] is False
            assert body["problems"] == ["database unreachable"]
            tries = _events(log, "database_unreachable")
            assert [e["attempt"] for e in tries] == list(range(1, len(tries) + 1))  # each try once
            assert all(e["retry_in"] > 0 and e["level"] == "warning" for e in tries)
            assert tries[1]["retry_in"] > tries[0]["retry_in"] * 1.2  # backing off
            blocker.unlink()  # the volume is there now
            ann = tg.user(7701, "Ann", token=TOKEN, language_code="en")
            await tg.wait_until(lambda: len(tg.calls("setMyCommands")) >= 2, 90)
            await ann.send_command("help")
            await ann.expect("/lang", 30)
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                body = await resp.json()
                assert resp.status == 200 and body["ready"] is True and body["ok"] is True
            assert _events(log, "database_reachable")
    finally:
        await process.stop()
