"""The bot's own CPU per update, with nothing else on the machine's cores: the real Dispatcher, middlewares,
handlers, inbox, outbox and database, but Telegram answered in-process (no socket, no driver).

    .venv/bin/python bench/update_cost.py [--promoters 20] [--contacts 10] [--database sqlite|postgres]

Why beside bench/load.py: there the driver, the stand-in and the bot share two cores, so the bot's CPU
per voice note moves by 10% from run to run of the same code. Here the promoters' updates arrive as the
inbox would get them from getUpdates (one batch per form step for all promoters), Telegram's answers are
made from the request (a message for sendMessage and editMessageText, True for the rest) and still go
through aiogram's request serialisation and response parsing, and the voice note (the load bench's
12-second note, distinct for each contact) is "downloaded" from memory. Reported: CPU (process time, the
decoding thread included) per form step and per voice note, and per whole contact; SQL statements per
update. The sockets' share (about a tenth of the bot's loop under load) is not in these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import TelegramMethod

from bench.load import FORM, make_note, prepare

TOKEN = "123456:cost-token"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "Fieldcheck", "username": "fieldcheck_bot"}


class Telegram:
    """Each chat's messages as the bot left them, and the files promoters sent."""

    def __init__(self) -> None:
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}
        self.files: dict[str, bytes] = {}
        self.ids = itertools.count(1)
        self.calls: dict[str, int] = {}

    def answer(self, method: TelegramMethod[Any]) -> Any:
        name = method.__api_method__
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in ("sendMessage", "editMessageText", "sendPhoto"):
            chat = int(method.chat_id)  # type: ignore[attr-defined]
            message_id = int(getattr(method, "message_id", None) or next(self.ids))
            message = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": chat, "type": "private", "first_name": "P"},
                "from": BOT_USER,
                "text": getattr(method, "text", None) or getattr(method, "caption", None) or "",
            }
            markup = getattr(method, "reply_markup", None)
            if markup is not None and hasattr(markup, "inline_keyboard"):
                message["reply_markup"] = markup.model_dump(mode="json", exclude_none=True)
            self.messages.setdefault(chat, {})[message_id] = message
            return message
        if name == "getFile":
            file_id = method.file_id  # type: ignore[attr-defined]
            size = len(self.files[file_id])
            return {"file_id": file_id, "file_unique_id": file_id, "file_size": size, "file_path": file_id}
        return True

    def last(self, chat: int) -> dict[str, Any]:
        return self.messages[chat][max(self.messages[chat])]


class AnsweredHere(AiohttpSession):
    """Telegram's answers made in-process, through aiogram's own serialisation and parsing."""

    def __init__(self, telegram: Telegram) -> None:
        super().__init__()
        self.telegram = telegram

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:  # noqa: ASYNC109
        form = self.build_form_data(bot=bot, method=method)
        await form().as_bytes()  # the request body as aiohttp would write it
        content = json.dumps({"ok": True, "result": self.telegram.answer(method)})
        return self.check_response(bot=bot, method=method, status_code=200, content=content).result

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,  # noqa: ASYNC109 (aiogram's signature)
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        yield self.telegram.files[url.rsplit("/", 1)[1]]


class Collections:
    """The garbage collector's share of the CPU (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds, self.runs, self._started = 0.0, [0, 0, 0], 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            self.runs[info["generation"]] += 1


def _swap_session(bot: Bot, telegram: Telegram) -> None:
    """The same request middlewares (commit before reply, retry), another way to reach Telegram."""
    session = AnsweredHere(telegram)
    session.middleware = bot.session.middleware
    bot.session = session


class Promoters:
    def __init__(self, count: int, telegram: Telegram) -> None:
        self.ids = [200_000 + n for n in range(count)]
        self.telegram = telegram
        self.update_ids = itertools.count(1)

    def _sender(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"P{user_id}", "language_code": "en"}

    def _message(self, user_id: int, **content: Any) -> dict[str, Any]:
        message = {
            "message_id": next(self.telegram.ids),
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": f"P{user_id}"},
            "from": self._sender(user_id),
            **content,
        }
        return {"update_id": next(self.update_ids), "message": message}

    def text(self, user_id: int, text: str) -> dict[str, Any]:
        return self._message(user_id, text=text)

    def press(self, user_id: int, label: str) -> dict[str, Any]:
        shown = self.telegram.last(user_id)
        buttons = [b for row in shown.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
        data = next(b["callback_data"] for b in buttons if b["text"].startswith(label))
        query = {
            "id": str(next(self.update_ids)),
            "from": self._sender(user_id),
            "message": shown,
            "chat_instance": str(user_id),
            "data": data,
        }
        return {"update_id": next(self.update_ids), "callback_query": query}

    def voice(self, user_id: int, data: bytes, seconds: int) -> dict[str, Any]:
        file_id = f"voice-{user_id}-{len(self.telegram.files)}"
        self.telegram.files[file_id] = data
        voice = {
            "file_id": file_id,
            "file_unique_id": file_id,
            "duration": seconds,
            "mime_type": "audio/ogg",
            "file_size": len(data),
        }
        return self._message(user_id, voice=voice)


async def run(args: argparse.Namespace) -> None:
    from sqlalchemy import event

    from bot.app import build_runtime, settle_heap
    from infra.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="fieldcheck-cost-"))
    args.promoters = max(args.promoters, 1)
    url, code = await prepare(args, work)
    note = await make_note(work)
    runtime = await build_runtime(
        Settings(
            _env_file=None,
            bot_token=TOKEN,
            database_url=url,
            storage_root=work / "audio",
            migrate_on_start=False,
            throttle_rate_per_second=1000,
            throttle_burst=1000,
            redis_url=None,
        )
    )
    telegram = Telegram()
    for bot in (runtime.bot, runtime.outbox.bot):
        _swap_session(bot, telegram)
    tally = {"statements": 0, "connections": 0}

    def count(what: str) -> Any:
        def listener(*_args: Any) -> None:
            tally[what] += 1

        return listener

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count("statements"))
    event.listen(runtime.engine.sync_engine.pool, "connect", count("connections"))
    people = Promoters(args.promoters, telegram)

    async def batch(payloads: list[dict[str, Any]]) -> None:
        await runtime.inbox.accept(payloads)
        await runtime.inbox.wait_handled()
        await runtime.outbox.drain()

    await batch([people.text(p, f"/start inv_{code}") for p in people.ids])
    kinds = {"text": [0.0, 0, 0], "press": [0.0, 0, 0], "voice": [0.0, 0, 0]}  # cpu s, updates, statements
    settle_heap()  # as `python -m bot run` does once started
    profile = _profiler(args.profile)
    collector = Collections()
    gc.callbacks.append(collector)
    began_cpu, began_wall = time.process_time(), time.monotonic()
    opened_before = tally["connections"]

    async def measured(kind: str, payloads: list[dict[str, Any]]) -> None:
        cpu, before = time.process_time(), tally["statements"]
        await batch(payloads)
        kinds[kind][0] += time.process_time() - cpu
        kinds[kind][1] += len(payloads)
        kinds[kind][2] += tally["statements"] - before

    for _ in range(args.contacts):
        for kind, what, _expected in FORM:
            make = people.text if kind == "text" else people.press
            await measured(kind, [make(p, what) for p in people.ids])
        await measured(
            "voice", [people.voice(p, note.data + random.randbytes(16), note.seconds) for p in people.ids]
        )
    cpu, wall = time.process_time() - began_cpu, time.monotonic() - began_wall
    opened_while_measured = tally["connections"] - opened_before
    gc.callbacks.remove(collector)
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.profile)
    contacts = args.contacts * args.promoters
    unanswered = [p for p in people.ids if "received" not in json.dumps(telegram.last(p))]
    await runtime.close()
    print(
        f"database {args.database}, {args.promoters} promoters x {args.contacts} contacts "
        f"(a batch per step, as getUpdates would bring them)\n"
        f"CPU per contact: {cpu * 1000 / contacts:.1f} ms ({wall:.1f} s wall for {contacts})\n"
        + "\n".join(
            f"  {kind}: {s * 1000 / n:.2f} ms CPU and {q / n:.1f} SQL statements per update ({n} updates)"
            for kind, (s, n, q) in kinds.items()
        )
        + f"\ngarbage collection: {collector.seconds * 1000 / contacts:.1f} ms per contact "
        f"(collections of generation 0/1/2: {'/'.join(map(str, collector.runs))})"
        + f"\ndatabase connections opened while measured: {opened_while_measured}"
        + f"\nBot API calls per contact: {sum(telegram.calls.values()) / contacts:.1f} "
        f"({', '.join(f'{m} {c / contacts:.1f}' for m, c in sorted(telegram.calls.items()))})\n"
        f"promoters whose last message is not a receipt: {len(unanswered)}",
        flush=True,
    )


def _profiler(path: str | None) -> Any:
    if not path:
        return None
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    return profile


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--promoters", type=int, default=20)
    parser.add_argument("--contacts", type=int, default=10, help="contacts per promoter")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the measured part into FILE")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
