"""Driver for tests and the sandbox: act as users and groups, read what the bot sent, inject faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from telegram_standin.server import BotApi
from telegram_standin.state import FILE_TEMPORARILY_UNAVAILABLE, BotAccount, Chat, Fault, World

MessagePredicate = Callable[[dict[str, Any]], bool]


class StandIn:
    """Runs the stand-in on loopback. Use as `async with StandIn() as tg:`."""

    def __init__(self, files_dir: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._tmp = None if files_dir else tempfile.mkdtemp(prefix="tg-standin-")
        self.world = World(files_dir or Path(self._tmp or "."))
        self.api = BotApi(self.world)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> StandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._runner = web.AppRunner(self.api.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner:
            for bot in self.world.bots.values():  # release pending long polls: a stop does not wait them out
                bot.new_update.set()
            await self._runner.cleanup()
            self._runner = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_server(self) -> TelegramAPIServer:
        return TelegramAPIServer.from_base(self.base_url)

    # -- people and chats -------------------------------------------------------------------------
    def bot(self, token: str) -> BotAccount:
        return self.world.bot(token)

    def user(
        self,
        user_id: int,
        first_name: str = "User",
        *,
        token: str,
        language_code: str = "ru",
        username: str | None = None,
        last_name: str | None = None,
    ) -> UserClient:
        person: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "language_code": language_code,
        }
        if username:
            person["username"] = username
        if last_name:
            person["last_name"] = last_name
        chat = self.world.chats.get(user_id)
        if chat is None:
            chat = Chat(id=user_id, type="private", user=person)
            self.world.chats[user_id] = chat
        return UserClient(self, self.world.bot(token), person, chat)

    def group(self, chat_id: int, title: str, *, token: str) -> GroupClient:
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        chat = self.world.chats.setdefault(chat_id, Chat(id=chat_id, type="supergroup", title=title))
        return GroupClient(self, self.world.bot(token), chat)

    # -- faults and inspection ------------------------------------------------------------------------
    def fail_next(
        self,
        method: str | None = None,
        *,
        status: int = 429,
        times: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
        migrate_to_chat_id: int | None = None,
        html: bool = False,
        chat_id: int | None = None,
    ) -> None:
        self.world.faults.append(
            Fault(method, status, times, retry_after, description, migrate_to_chat_id, html, chat_id=chat_id)
        )

    def drop_answer(self, method: str, *, times: int = 1, chat_id: int | None = None) -> None:
        """The next `times` calls of `method` run, and their answers are lost (the connection closes before
        it): a timeout after the request reached Telegram (state.Fault.drop)."""
        self.world.faults.append(Fault(method, 0, times, drop=True, chat_id=chat_id))

    def flood_chat(self, chat_id: int, retry_after: int, method: str | None = None) -> None:
        """The next call to this chat goes over Telegram's per-chat limit: 429 with retry_after, and every
        call to this chat is refused so until the wait is over; other chats are not affected."""
        self.world.faults.append(Fault(method, 429, 1, retry_after=retry_after, chat_id=chat_id))

    def file_temporarily_unavailable(self, times: int = 1) -> None:
        """getFile answers "wrong file_id or the file is temporarily unavailable" `times` times, then works
        (Telegram's file servers out for a while; state.FILE_TEMPORARILY_UNAVAILABLE)."""
        self.fail_next("getFile", status=400, times=times, description=FILE_TEMPORARILY_UNAVAILABLE)

    def fail_at_random(
        self, probability: float, *, methods: tuple[str, ...] = ("sendMessage",), seed: int = 7
    ) -> None:
        """Telegram unreliable for a while: each call of `methods` fails with `probability` (a 429 asking
        to wait 1 s, a 500, a 502 page from the front proxy, or the connection dropping with no answer, as
        a timeout does: that call ran, see state.Fault.drop); `probability=0` ends it."""
        self.world.random_faults = (probability, random.Random(seed), methods) if probability else None

    def set_privacy_mode(self, token: str, enabled: bool) -> None:
        """BotFather's /setprivacy for the bot: on (the default), it hears only what is meant for it in
        groups; off, everything (getMe's can_read_all_group_messages says which)."""
        self.world.bot(token).can_read_all_group_messages = not enabled

    def upload(self, path: Path, folder: str = "voice") -> str:
        """Put a file on the server as if someone had sent it earlier; returns its file_id (for seeding)."""
        return self.world.store_file(path.read_bytes(), folder, path.suffix).file_id

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        return [params for name, params in self.world.calls if method in (None, name)]

    def redeliver(self, token: str, update: dict[str, Any]) -> None:
        """Deliver an already handled update again, as Telegram does after a crash before the offset moved."""
        bot = self.world.bot(token)
        bot.updates.append({**update, "_redelivered": True})
        bot.new_update.set()

    async def wait_until(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        async def waiter() -> Any:
            async with self.world.changed:
                while not (result := condition()):
                    await self.world.changed.wait()
                return result

        try:
            return await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            raise AssertionError(f"condition not met within {timeout}s") from None

    async def _notify(self) -> None:
        async with self.world.changed:
            self.world.changed.notify_all()

    def transcript(self, chat_id: int) -> str:
        chat = self.world.chats[chat_id]
        name = chat.title or (chat.user or {}).get("first_name", str(chat_id))
        lines = [f"== chat {name} ({chat_id}) =="]
        arrows = {
            "in": ">>",
            "edit-in": ">> (edited)",
            "press": ">>",
            "out": "<<",
            "edit": "<< (edited)",
            "delete": "<< (deleted)",
        }
        for direction, message_id, summary in chat.log:
            who = ""
            if direction == "in":
                sender = chat.messages[message_id].get("from", {})
                who = f"{sender.get('first_name', '?')}: "
            elif direction not in ("delete", "press", "edit-in"):
                who = "bot: "
            lines.append(f"{arrows[direction]} {who}{summary}".rstrip())
        return "\n".join(lines)


class _ChatClient:
    def __init__(self, standin: StandIn, bot: BotAccount, chat: Chat) -> None:
        self.standin, self.bot, self.chat = standin, bot, chat
        self._seen = sum(1 for d, _, _ in chat.log if d == "out")
        self.last_query: str | None = None

    @property
    def chat_id(self) -> int:
        return self.chat.id

    def bot_messages(self) -> list[dict[str, Any]]:
        """Every message the bot sent here, in its current (possibly edited) state."""
        return list(self._shown(self.chat.log))

    def _shown(self, log: Iterable[tuple[str, int, str]]) -> Iterator[dict[str, Any]]:
        for direction, mid, _ in log:
            if direction == "out" and not self.chat.messages[mid].get("_deleted"):
                yield self.chat.messages[mid]

    def last_state(self, message: dict[str, Any]) -> dict[str, Any]:
        """The current state of a message the bot sent here (after any edits)."""
        return self.chat.messages[message["message_id"]]

    def last(self) -> dict[str, Any]:
        message = self._latest()
        if message is None:
            raise AssertionError(f"the bot sent nothing to chat {self.chat.id}")
        return message

    def _latest(self) -> dict[str, Any] | None:
        """The last of bot_messages(), found from the end: every call to the stand-in wakes every waiting
        client, and building the whole list each time made the load bench's driver grow with its chats."""
        return next(self._shown(reversed(self.chat.log)), None)

    def _out_ids(self) -> list[int]:
        return [mid for direction, mid, _ in self.chat.log if direction == "out"]

    async def next_message(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next bot message not yet returned by this client (waits for it)."""
        await self.standin.wait_until(lambda: len(self._out_ids()) > self._seen, timeout)
        message = self.chat.messages[self._out_ids()[self._seen]]
        self._seen += 1
        return message

    async def expect(self, contains: str, timeout: float = 10.0) -> dict[str, Any]:
        """The bot's next message here, which must contain `contains`: anything else it sent first fails the
        test at once, saying what came instead (a stray message is a finding, not noise to skip)."""
        message = await self.next_message(timeout)
        if contains not in message_text(message):
            raise AssertionError(
                f"chat {self.chat.id}: expected a message containing {contains!r}, "
                f"the bot sent {_summary(message)!r}"
            )
        return message

    async def skip_to(self, contains: str, timeout: float = 10.0) -> dict[str, Any]:
        """Pass over whatever the bot sends here until a message contains `contains` (where the messages in
        between are not what the test is about, such as the cards and recordings before an alert)."""
        while True:
            message = await self.next_message(timeout)
            if contains in message_text(message):
                return message

    async def wait_last(self, contains: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the bot's latest message here (sent or edited in place) contains `contains`."""
        await self.standin.wait_until(
            lambda: (latest := self._latest()) is not None and contains in message_text(latest), timeout
        )
        self.skip_pending()
        return self.last()

    def skip_pending(self) -> None:
        self._seen = sum(1 for d, _, _ in self.chat.log if d == "out")

    async def _incoming(
        self, sender: dict[str, Any], content: dict[str, Any], summary: str
    ) -> dict[str, Any]:
        message = self.standin.world.add_message(self.chat, {"from": sender, **content}, "in", summary)
        if self.chat.type == "private":
            self.chat.started_bot = True  # a person who writes to the bot has started it
        if not self.standin.world.reaches_bot(self.bot, self.chat, message):
            # Privacy mode: the message is in the group, but Telegram never tells the bot (no update).
            return {"message": _public(message)}
        update = self.standin.world.push_update(self.bot, {"message": _public(message)})
        await self.standin._notify()
        return update

    async def _press(
        self, sender: dict[str, Any], message: dict[str, Any], text: str | None, data: str | None
    ) -> str:
        if data is None:
            if not buttons(message):
                # A card goes out bare and gets its buttons by an edit once Telegram has answered (the outbox's
                # at-least-once delivery, docs/architecture.md): a person presses what they see a moment later.
                message_id = message["message_id"]
                await self.standin.wait_until(lambda: buttons(self.chat.messages.get(message_id, message)))
                message = self.chat.messages.get(message_id, message)
            data = _find_button(message, text)
        query_id = self.standin.world.new_callback_id()
        self.last_query = query_id
        self.standin.world.pending_callbacks[query_id] = time.monotonic()
        query = {
            "id": query_id,
            "from": sender,
            "message": _public(message),
            "chat_instance": str(message["chat"]["id"]),
            "data": data,
        }
        self.standin.world.push_update(self.bot, {"callback_query": query})
        self.chat.log.append(
            ("press", message["message_id"], f"{sender['first_name']}: [pressed {text or data!r}]")
        )
        await self.standin._notify()
        return query_id

    async def callback_answer(self, query_id: str, timeout: float = 10.0) -> dict[str, Any]:
        answers = self.standin.world.callback_answers
        return await self.standin.wait_until(lambda: answers.get(query_id), timeout)  # type: ignore[no-any-return]


class UserClient(_ChatClient):
    """A person in a private chat with the bot."""

    def __init__(self, standin: StandIn, bot: BotAccount, person: dict[str, Any], chat: Chat) -> None:
        super().__init__(standin, bot, chat)
        self.person = person

    @property
    def id(self) -> int:
        return int(self.person["id"])

    def __repr__(self) -> str:
        return f"UserClient({self.person['first_name']!r}, id={self.id})"

    async def send_text(self, text: str) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return await self._incoming(self.person, content, text)

    async def edit_text(self, sent: dict[str, Any], text: str) -> dict[str, Any]:
        """The person edits a message they sent (an `edited_message` update, as Telegram sends one)."""
        message = self.chat.messages[int(sent["message"]["message_id"])]
        message["text"], message["edit_date"] = text, int(time.time())
        self.chat.log.append(("edit-in", message["message_id"], f"{self.person['first_name']}: {text}"))
        update = self.standin.world.push_update(self.bot, {"edited_message": _public(message)})
        await self.standin._notify()
        return update

    async def send_command(self, command: str, args: str = "") -> dict[str, Any]:
        return await self.send_text(f"/{command.lstrip('/')}" + (f" {args}" if args else ""))

    def _stored(self, path: Path, folder: str, suffix: str) -> dict[str, Any]:
        """Keep a file the person sends in the stand-in's store; the fields every file object carries."""
        stored = self.standin.world.store_file(path.read_bytes(), folder, suffix)
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": stored.size}

    async def send_voice(
        self,
        path: Path,
        *,
        duration: int | None = None,
        caption: str | None = None,
        mime_type: str = "audio/ogg",
    ) -> dict[str, Any]:
        voice = {
            **self._stored(path, "voice", ".oga"),
            "duration": duration if duration is not None else probe_duration(path),
            "mime_type": mime_type,
        }
        content: dict[str, Any] = {"voice": voice}
        if caption:
            content["caption"] = caption
        return await self._incoming(self.person, content, f"<voice {voice['duration']}s>")

    async def send_audio(self, path: Path, *, duration: int | None = None) -> dict[str, Any]:
        audio = {
            **self._stored(path, "music", path.suffix),
            "duration": duration if duration is not None else probe_duration(path),
            "file_name": path.name,
            "mime_type": mimetypes.guess_type(path.name)[0] or "audio/mpeg",
        }
        return await self._incoming(self.person, {"audio": audio}, f"<audio {path.name}>")

    async def send_document(self, path: Path, *, mime_type: str | None = None) -> dict[str, Any]:
        document = {
            **self._stored(path, "documents", path.suffix),
            "file_name": path.name,
            "mime_type": mime_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        }
        return await self._incoming(self.person, {"document": document}, f"<document {path.name}>")

    async def send_contact(self, phone_number: str, first_name: str | None = None) -> dict[str, Any]:
        contact = {
            "phone_number": phone_number,
            "first_name": first_name or self.person["first_name"],
            "user_id": self.id,
        }
        return await self._incoming(self.person, {"contact": contact}, f"<contact {phone_number}>")

    async def press(
        self, message: dict[str, Any], text: str | None = None, *, data: str | None = None
    ) -> str:
        """Press an inline button by its label (or send arbitrary callback data, as a forger would)."""
        return await self._press(self.person, message, text, data)

    def block_bot(self) -> None:
        self.chat.blocked_bot = True

    def never_started(self) -> None:
        """A person who has never written to the bot: sending to them is 403 "bot can't initiate conversation
        with a user" until their first message."""
        self.chat.started_bot = False

    def forbid_voice_messages(self, refusal: str | None = None) -> None:
        """Privacy > Voice messages > My contacts: bots can no longer send this person voice notes.
        `refusal`: which of state.VOICE_REFUSALS sendVoice is answered with (the server's by default)."""
        self.chat.voice_forbidden = True
        if refusal is not None:
            self.chat.voice_refusal = refusal


class GroupClient(_ChatClient):
    """A group chat the bot is a member of. The bot has privacy mode on (BotFather's default) and is no
    admin unless a test says otherwise: it then hears only commands, replies to its own messages and service
    messages here (World.reaches_bot); `set_bot_admin` or `StandIn.set_privacy_mode` lift that."""

    def restrict_bot(self, can_send: bool = False) -> None:
        """The group took (or gave back) the bot's right to send messages: "not enough rights to send text
        messages to the chat"."""
        self.chat.bot_can_send = can_send

    def set_bot_admin(self, admin: bool = True) -> None:
        """The group made the bot an administrator: admins receive every message."""
        self.chat.bot_is_admin = admin

    async def send_text(
        self, user: UserClient, text: str, *, reply_to: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """`reply_to`: a message of this chat the person replies to (as when answering a ForceReply)."""
        self.chat.members.add(user.id)
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(text.split(maxsplit=1)[0])}
            ]
        if reply_to is not None:
            replied = self.chat.messages[int(reply_to["message_id"])]
            content["reply_to_message"] = _public(replied)
        return await self._incoming(user.person, content, text)

    async def type_text(self, user: UserClient, text: str) -> dict[str, Any]:
        """What a person's Telegram app sends when they type `text` here: a reply to the bot's latest message
        that forces a reply on them (ForceReply: on everyone, or, `selective`, on the people its text mentions
        and the sender of the message it replies to) if they have not written since, else a plain message
        (which, with privacy mode on, never reaches the bot)."""
        return await self.send_text(user, text, reply_to=self._forced_reply(user))

    def _forced_reply(self, user: UserClient) -> dict[str, Any] | None:
        for direction, mid, _summary in reversed(self.chat.log):
            message = self.chat.messages.get(mid) or {}
            if direction == "in" and (message.get("from") or {}).get("id") == user.id:
                return None  # they wrote after it: the reply interface is gone
            if direction != "out" or message.get("_deleted"):
                continue
            markup = message.get("_keyboard") or {}
            if markup.get("force_reply") and (not markup.get("selective") or _addresses(message, user)):
                return message
        return None

    async def press(
        self, user: UserClient, message: dict[str, Any], text: str | None = None, *, data: str | None = None
    ) -> str:
        return await self._press(user.person, message, text, data)


def _addresses(message: dict[str, Any], user: UserClient) -> bool:
    """Bot API ForceReply.selective: the users @mentioned in the text (a text mention, tg://user?id=, too)
    and the sender of the message it replies to."""
    if ((message.get("reply_to_message") or {}).get("from") or {}).get("id") == user.id:
        return True
    username = user.person.get("username")
    if username and f"@{username}".lower() in str(message.get("text") or "").lower():
        return True
    for entity in message.get("_entities") or []:
        kind, argument = (
            (entity.get("type"), (entity.get("user") or {}).get("id"))
            if isinstance(entity, dict)
            else (entity[0], entity[3])
        )
        if kind == "text_mention" and str(argument) == str(user.id):
            return True
    return False


def message_text(message: dict[str, Any]) -> str:
    return str(message.get("text") or message.get("caption") or "")


def _summary(message: dict[str, Any]) -> str:
    """A message as a failing test shows it: its text, or what it carries when it has none (a chart, a voice)."""
    kinds = [kind for kind in ("photo", "voice", "audio", "document", "sticker") if message.get(kind)]
    return message_text(message)[:200] or f"<{', '.join(kinds) or 'no text'}>"


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [button for row in rows for button in row]


def _find_button(message: dict[str, Any], text: str | None) -> str:
    for button in buttons(message):
        if text is not None and (button["text"] == text or text in button["text"]):
            data = button.get("callback_data")
            if data is None:
                raise AssertionError(f"button {text!r} has no callback data")
            return str(data)
    labels = [b["text"] for b in buttons(message)]
    raise AssertionError(f"no button {text!r} on message; buttons: {labels}")


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in message.items() if not k.startswith("_")}))  # type: ignore[no-any-return]


def probe_duration(path: Path) -> int:
    """Whole seconds, as Telegram clients report; 0 where ffprobe is missing or the file is not audio."""
    if not shutil.which("ffprobe"):
        return 0
    with contextlib.suppress(subprocess.SubprocessError, ValueError):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return round(float(out.stdout.strip()))
    return 0
