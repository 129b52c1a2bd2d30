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
# What a bot may upload to api.telegram.org in one request: "50 MB" (Bot API sendDocument; telegram-bot-api
# README: only a server run with --local takes uploads up to 2000 MB). The open-source server's own cap is
# far higher (tdlib tdnet/td/net/HttpReader.cpp read_next: 413 "Request Entity Too Large: content length is
# ..." past MAX_CONTENT_SIZE); api.telegram.org answers a body over 50 MB with 413 "Request Entity Too
# Large" (aiogram: TelegramEntityTooLarge). Modelled on the uploaded fields (aiohttp's client_max_size).
# Tests may lower World.upload_limit_bytes; the default stays the real one.
UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024
# How sendVoice to a person who refuses voice notes is answered. The server's own refusal is passed through
# as "Bad Request: VOICE_MESSAGES_FORBIDDEN" (telegram-bot-api Client.cpp fail_query_with_error keeps an
# upper-case error as it is). When tdlib already knows the person's setting it refuses before asking the
# server: td/telegram/MessageContent.cpp can_send_message_content checks
# UserManager::get_user_voice_messages_forbidden and returns "User restricted receiving of ... messages",
# which fail_query_with_error lower-cases into "Bad Request: user restricted receiving of ...". The words
# differ between tdlib versions: "voice note messages" (current), and in older ones the VoiceNote and
# VideoNote texts were swapped, so a voice note was refused with "video messages" (and a video note with
# "voice messages").
VOICE_REFUSALS = (
    "Bad Request: VOICE_MESSAGES_FORBIDDEN",
    "Bad Request: user restricted receiving of voice note messages",
    "Bad Request: user restricted receiving of video messages",
    "Bad Request: user restricted receiving of voice messages",
)
# getFile while Telegram cannot reach the file for now (a data centre or file server out for a while): the
# same file_id works again later. telegram-bot-api Client.cpp process_get_file_query answers a failed
# downloadFile with tdlib's error through fail_query_with_error.
FILE_TEMPORARILY_UNAVAILABLE = "Bad Request: wrong file_id or the file is temporarily unavailable"
# Message fields of service messages: every bot receives them, privacy mode or not.
SERVICE_FIELDS = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
    }
)


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
    # No answer at all: the connection closes (a timeout, a lost network) *after the call ran*. The real
    # server starts a query the moment it has read it (telegram-bot-api HttpConnection::handle sends it to
    # ClientManager::send at once; a hang-up only drops the connection the answer would have gone to), so
    # a client that saw no answer cannot tell whether the message went out: "ran, answer lost".
    drop: bool = False
    # Only calls naming this chat (chat_id) fail. A 429 so scoped starts a flood wait for that chat alone:
    # Telegram limits sends per chat (1/s, 20/min in a group) and answers FLOOD_WAIT_X to the call that
    # went over; telegram-bot-api passes it on as 429 "Too Many Requests: retry after X" with
    # parameters.retry_after (Client.cpp fail_query_with_error -> Query::set_retry_after_error), for that
    # query only: other chats' sends go on (World.flood_until).
    chat_id: int | None = None


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
    # False: a person who has never written to the bot (never pressed Start). tdlib refuses a bot's message
    # to them with 403 "Bot can't initiate conversation with a user" (passed through by Client.cpp
    # fail_query_with_error as "Forbidden: bot can't initiate conversation with a user"). Their first message
    # to the bot sets it.
    started_bot: bool = True
    # False: the group took the bot's right to send messages (a restricted member, or a channel-like group
    # where only admins post): tdlib's can_send_message_content answers 400 "Not enough rights to send text
    # messages to the chat" (voice notes, documents, photos, audios: each its own wording).
    bot_can_send: bool = True
    # The person's privacy setting "voice messages: my contacts" (a Premium option): sendVoice is refused
    # with one of VOICE_REFUSALS (voice_refusal says which).
    voice_forbidden: bool = False
    voice_refusal: str = "Bad Request: VOICE_MESSAGES_FORBIDDEN"
    # The bot is an administrator of this group: admins receive every message, privacy mode or not.
    bot_is_admin: bool = False
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
    # setWebhook (Client.cpp, Client::process_set_webhook_query): a URL is accepted at most once a second
    # (next_allowed_set_webhook_time_), and a call still verifying its URL is ended by the next one.
    next_set_webhook_at: float = 0.0
    webhook_verifying: asyncio.Event | None = None  # set: the verifying call answers 409
    # BotFather's /setprivacy: False (privacy mode on, the default) limits what the bot hears in groups
    # (World.reaches_bot). getMe reports it as telegram-bot-api Client.cpp's JsonUser does
    # (can_read_all_group_messages from tdlib's userTypeBot).
    can_read_all_group_messages: bool = False

    def me(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": self.can_read_all_group_messages,
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
        self.upload_limit_bytes = UPLOAD_LIMIT_BYTES  # a larger request body is answered 413
        self.download_delay = 0.0  # seconds each file download waits (tests: kill a process mid-download)
        self.downloads_in_flight = 0  # downloads waiting out that delay right now
        # method -> seconds a call waits before it runs (tests: kill a process mid-call). The call runs
        # after the wait even if its caller is gone: the real server took it when it arrived
        # (telegram-bot-api HttpConnection::handle), so a killed process's last call still happens.
        self.method_delay: dict[str, float] = {}
        self.calls_in_flight: dict[str, int] = {}  # method -> calls waiting out that delay right now
        self.faults: list[Fault] = []
        # (probability, random generator, methods): Telegram failing at random, 429s and 5xx mixed
        self.random_faults: tuple[float, Any, tuple[str, ...]] | None = None
        self.random_faults_seen: dict[int, int] = {}  # status (0: a dropped connection) -> how many
        self.flood_until: dict[int, float] = {}  # chat id -> end of its flood wait (monotonic), see Fault
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.call_times: list[
            tuple[float, str, str]
        ] = []  # (monotonic time, method, chat_id) for rate checks
        self.callback_answers: dict[str, dict[str, Any]] = {}
        # query id -> when it was pressed (monotonic). Telegram keeps a press answerable for a short while
        # only (the client shows its spinner for about 15 s); later answers get QUERY_ID_INVALID.
        self.pending_callbacks: dict[str, float] = {}
        self.callback_ttl = 15.0
        # Seconds setWebhook spends verifying a new URL before it answers (Telegram connects to it first;
        # a setWebhook arriving meanwhile ends this one with 409 "Conflict: terminated by other setWebhook").
        self.webhook_verify_seconds = 0.05
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

    @staticmethod
    def reaches_bot(bot: BotAccount, chat: Chat, message: dict[str, Any]) -> bool:
        """Privacy mode (https://core.telegram.org/bots/features#privacy-mode): in a group, a bot with
        privacy mode on (BotFather's default; getMe's can_read_all_group_messages false) receives only
        commands (/cmd, or /cmd@its_name; not /cmd@another_bot), replies to its own messages (a ForceReply
        prompt is answered with such a reply) and service messages; an admin bot, or one with privacy mode
        off, receives every message. The Telegram server filters (tdlib and telegram-bot-api pass on what
        they get: Client.cpp only reports the flag in getMe's JsonUser). A mention by @username is not
        modelled as reaching the bot (stricter than BotFather's wording; the bot relies on none)."""
        if chat.type == "private" or bot.can_read_all_group_messages or chat.bot_is_admin:
            return True
        if SERVICE_FIELDS & message.keys():
            return True
        replied = message.get("reply_to_message") or {}
        if (replied.get("from") or {}).get("id") == bot.id:
            return True
        text = str(message.get("text") or "")
        for entity in message.get("entities") or []:
            if entity.get("type") == "bot_command" and entity.get("offset") == 0:
                _command, at, target = text[: int(entity.get("length", 0))].partition("@")
                return not at or target.lower() == bot.username.lower()
        return False

    # -- faults -----------------------------------------------------------------------------------
    def take_fault(self, method: str, chat_id: Any = None) -> Fault | None:
        chat = _chat_key(chat_id)
        until = self.flood_until.get(chat) if chat is not None else None
        if until is not None:
            left = until - time.monotonic()
            if left > 0:  # still inside this chat's flood wait: refused again, with the time left
                return Fault(method, 429, 1, retry_after=max(1, int(left + 0.999)), chat_id=chat)
            del self.flood_until[chat]  # type: ignore[arg-type]
        for fault in self.faults:
            if fault.chat_id is not None and fault.chat_id != chat:
                continue
            if fault.remaining > 0 and fault.method in (None, method):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                if fault.status == 429 and fault.chat_id is not None:
                    self.flood_until[fault.chat_id] = time.monotonic() + (fault.retry_after or 1)
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


def _chat_key(chat_id: Any) -> int | None:
    try:
        return int(chat_id)
    except (TypeError, ValueError):
        return None
