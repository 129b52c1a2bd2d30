"""The stand-in's world: bots, chats, messages, files, update queues and injected faults."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # Telegram's getFile limit for bots


class ApiError(Exception):
    """An error answer in the Bot API's own shape."""

    def __init__(
        self,
        code: int,
        description: str,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        html: bool = False,
    ) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after
        self.migrate_to_chat_id, self.html = migrate_to_chat_id, html

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        parameters: dict[str, int] = {}
        if self.retry_after is not None:
            parameters["retry_after"] = self.retry_after
        if self.migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = self.migrate_to_chat_id
        if parameters:
            body["parameters"] = parameters
        return body


@dataclass
class Fault:
    method: str | None  # None: any method
    status: int
    remaining: int
    retry_after: int | None = None
    description: str | None = None
    migrate_to_chat_id: int | None = None  # a group upgraded to a supergroup (400 with parameters)
    html: bool = False  # an HTML error page from a front-end proxy instead of JSON (seen on 502s)
    drop: bool = False  # no answer at all: the connection closes (a timeout, a lost network)


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    path: Path
    file_path: str  # server-relative path used in /file/bot<token>/<file_path>
    size: int


@dataclass
class Chat:
    id: int
    type: str  # private, group, supergroup
    title: str | None = None
    user: dict[str, Any] | None = None  # the person, for private chats
    members: set[int] = field(default_factory=set)
    blocked_bot: bool = False
    deactivated: bool = False  # the person deleted their account
    bot_kicked: bool = False  # the bot was removed from this group
    # The person's privacy setting "voice messages: my contacts" (a Premium option): bots get
    # VOICE_MESSAGES_FORBIDDEN for sendVoice (tdlib MessagesManager: the server's error passed through).
    voice_forbidden: bool = False
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Chronological log for transcripts: (direction, message_id, event) with direction "in"/"out"/"edit".
    log: list[tuple[str, int, str]] = field(default_factory=list)
    next_message_id: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def as_json(self) -> dict[str, Any]:
        if self.type == "private" and self.user:
            chat = {"id": self.id, "type": "private", "first_name": self.user["first_name"]}
            if self.user.get("username"):
                chat["username"] = self.user["username"]
            return chat
        return {"id": self.id, "type": self.type, "title": self.title or ""}


@dataclass
class BotAccount:
    token: str
    id: int
    username: str
    first_name: str
    updates: list[dict[str, Any]] = field(default_factory=list)
    update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    confirmed_below: int = 0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_max_connections: int = 40  # setWebhook's max_connections (1-100, default 40)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    allowed_updates: list[str] | None = None  # the last getUpdates/setWebhook allowed_updates; None: all
    new_update: asyncio.Event = field(default_factory=asyncio.Event)
    active_poll: asyncio.Event | None = None  # set to end the waiting long poll (another getUpdates came)

    def me(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }


class World:
    """All state of the stand-in. Methods here are synchronous; the server and driver await around them."""

    def __init__(self, files_dir: Path) -> None:
        self.files_dir = files_dir
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.bots: dict[str, BotAccount] = {}
        self.chats: dict[int, Chat] = {}
        self.files: dict[str, StoredFile] = {}
        self.download_delay = 0.0  # seconds each file download waits (tests: kill a process mid-download)
        self.downloads_in_flight = 0  # downloads waiting out that delay right now
        # method -> seconds its answer waits, before anything is done (tests: kill a process mid-call; the
        # call then never happened, as when a connection dies before the request reaches Telegram)
        self.method_delay: dict[str, float] = {}
        self.calls_in_flight: dict[str, int] = {}  # method -> calls waiting out that delay right now
        self.faults: list[Fault] = []
        # (probability, random generator, methods): Telegram failing at random, 429s and 5xx mixed
        self.random_faults: tuple[float, Any, tuple[str, ...]] | None = None
        self.random_faults_seen: dict[int, int] = {}  # status (0: a dropped connection) -> how many
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.call_times: list[
            tuple[float, str, str]
        ] = []  # (monotonic time, method, chat_id) for rate checks
        self.callback_answers: dict[str, dict[str, Any]] = {}
        # query id -> when it was pressed (monotonic). Telegram keeps a press answerable for a short while
        # only (the client shows its spinner for about 15 s); later answers get QUERY_ID_INVALID.
        self.pending_callbacks: dict[str, float] = {}
        self.callback_ttl = 15.0
        self.changed = asyncio.Condition()
        self._file_seq = itertools.count(1)
        self._callback_seq = itertools.count(1)

    # -- bots -------------------------------------------------------------------------------------
    def bot(self, token: str) -> BotAccount:
        bot_id, sep, secret = token.partition(":")
        if not sep or not bot_id.isdigit() or not secret:
            raise ApiError(401, "Unauthorized")
        if token not in self.bots:
            self.bots[token] = BotAccount(
                token=token, id=int(bot_id), username=f"fieldcheck_{bot_id}_bot", first_name="Fieldcheck"
            )
        return self.bots[token]

    def push_update(self, bot: BotAccount, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(bot.update_ids), **payload}
        kind = next(iter(payload))
        if bot.allowed_updates and kind not in bot.allowed_updates:
            return update  # Telegram does not keep update kinds the bot said it does not want
        bot.updates.append(update)
        bot.new_update.set()
        return update

    def take_updates(self, bot: BotAccount, offset: int | None, limit: int) -> list[dict[str, Any]]:
        if offset is not None and offset > bot.confirmed_below:
            bot.confirmed_below = offset
            bot.updates = [u for u in bot.updates if u["update_id"] >= offset or u.get("_redelivered")]
        ready = [u for u in bot.updates if u["update_id"] >= bot.confirmed_below or u.get("_redelivered")]
        out = ready[:limit]
        for update in out:
            if update.pop("_redelivered", False):
                bot.updates.remove(update)
        if not [u for u in bot.updates if u["update_id"] >= bot.confirmed_below]:
            bot.new_update.clear()
        return [{k: v for k, v in u.items() if not k.startswith("_")} for u in out]

    # -- faults -----------------------------------------------------------------------------------
    def take_fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.remaining > 0 and fault.method in (None, method):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                return fault
        if self.random_faults is not None:
            probability, rng, methods = self.random_faults
            if method in methods and rng.random() < probability:
                status = rng.choice((429, 500, 502, 0))  # 0: the connection drops without an answer
                self.random_faults_seen[status] = self.random_faults_seen.get(status, 0) + 1
                return Fault(
                    method,
                    status,
                    1,
                    retry_after=1 if status == 429 else None,
                    html=status == 502,
                    drop=status == 0,
                )
        return None

    # -- chats and messages -------------------------------------------------------------------------
    def chat(self, chat_id: Any) -> Chat:
        try:
            key = int(chat_id)
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None
        if key not in self.chats:
            raise ApiError(400, "Bad Request: chat not found")
        return self.chats[key]

    def add_message(
        self, chat: Chat, message: dict[str, Any], direction: str, summary: str
    ) -> dict[str, Any]:
        message_id = next(chat.next_message_id)
        message = {"message_id": message_id, "date": int(time.time()), "chat": chat.as_json(), **message}
        chat.messages[message_id] = message
        chat.log.append((direction, message_id, summary))
        return message

    def find_message(self, chat: Chat, message_id: Any, action: str) -> dict[str, Any]:
        try:
            message = chat.messages.get(int(message_id))
        except (TypeError, ValueError):
            message = None
        if message is None or message.get("_deleted"):
            raise ApiError(400, f"Bad Request: message to {action} not found")
        return message

    # -- files ------------------------------------------------------------------------------------
    def store_file(self, data: bytes, folder: str, suffix: str) -> StoredFile:
        seq = next(self._file_seq)
        unique = hashlib.sha256(data).hexdigest()[:16]
        file_id = f"{folder[:2].upper()}{seq:06d}{unique}"
        file_path = f"{folder}/file_{seq}{suffix}"
        disk = self.files_dir / file_path
        disk.parent.mkdir(parents=True, exist_ok=True)
        disk.write_bytes(data)
        stored = StoredFile(file_id, f"U{unique}", disk, file_path, len(data))
        self.files[file_id] = stored
        return stored

    def file(self, file_id: str) -> StoredFile:
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        return self.files[file_id]

    def new_callback_id(self) -> str:
        return f"cb{next(self._callback_seq)}"
