"""aiohttp application speaking the Bot API subset Fieldcheck uses, with Telegram's error texts."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from telegram_standin.markup import MAX_CALLBACK_ANSWER, check_text, formatted_text, parse_markup
from telegram_standin.state import MAX_DOWNLOAD_BYTES, ApiError, BotAccount, Chat, Fault, World

log = logging.getLogger("telegram_standin")

Params = dict[str, Any]
Uploads = dict[str, tuple[bytes, str]]
Handler = Callable[["BotApi", BotAccount, Params, Uploads], Awaitable[Any]]
_METHODS: dict[str, Handler] = {}

# Fields sent as JSON by clients; everything else stays a string or number.
_JSON_FIELDS = {
    "reply_markup",
    "entities",
    "caption_entities",
    "commands",
    "scope",
    "allowed_updates",
    "link_preview_options",
    "reply_parameters",
}
_MEDIA = {  # method -> (field, folder, object kind, default suffix)
    "sendVoice": ("voice", "voice", "voice", ".oga"),
    "sendAudio": ("audio", "music", "audio", ".mp3"),
    "sendDocument": ("document", "documents", "document", ""),
    "sendPhoto": ("photo", "photos", "photo", ".jpg"),
}


# tdlib can_send_message_content names each kind in its "not enough rights to send ... to the chat".
_RIGHTS = {
    "sendVoice": "voice notes",
    "sendAudio": "audios",
    "sendDocument": "documents",
    "sendPhoto": "photos",
}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        _METHODS[name] = func
        return func

    return register


class BotApi:
    def __init__(self, world: World) -> None:
        self.world = world
        self._webhook_tasks: dict[str, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._delayed: set[asyncio.Future[Any]] = set()  # delayed calls still to run (ended at stop)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self.handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self.handle_file)
        app.on_shutdown.append(self._end_delayed)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _end_delayed(self, _app: web.Application) -> None:
        for call in list(self._delayed):  # a stopping stand-in does not wait out the delays
            call.cancel()

    async def _cleanup(self, _app: web.Application) -> None:
        for task in [*self._webhook_tasks.values(), *self._delayed]:
            task.cancel()
        if self._http:
            await self._http.close()

    # -- HTTP entry points ------------------------------------------------------------------------
    async def handle_method(self, request: web.Request) -> web.Response:
        name = request.match_info["method"]
        try:
            bot = self.world.bot(request.match_info["token"])
            # api.telegram.org takes uploads up to 50 MB (state.UPLOAD_LIMIT_BYTES): larger, 413.
            try:
                params, uploads = await _read_params(
                    request.clone(client_max_size=self.world.upload_limit_bytes)
                )
            except web.HTTPRequestEntityTooLarge:
                raise ApiError(413, "Request Entity Too Large") from None
            delay = self.world.method_delay.get(name)
            if delay:
                self.world.calls_in_flight[name] = self.world.calls_in_flight.get(name, 0) + 1
                async with self.world.changed:  # a test may be waiting for the call to be in flight
                    self.world.changed.notify_all()
                # Shielded: a caller that hangs up (or is killed) meanwhile does not stop the call; the
                # real server took it when it arrived (HttpConnection::handle -> ClientManager::send).
                call = asyncio.ensure_future(self._delayed_call(name, bot, params, uploads, delay))
                self._delayed.add(call)
                call.add_done_callback(self._delayed.discard)
                result = await asyncio.shield(call)
            else:
                result = await self._call(name, bot, params, uploads, request)
        except _AnswerLost:
            return web.Response(status=504)  # never read: the connection is closed
        except ApiError as error:
            if error.html:
                page = f"<html><head><title>{error.code} Bad Gateway</title></head><body>nginx</body></html>"
                return web.Response(text=page, status=error.code, content_type="text/html")
            return web.json_response(error.body(), status=error.code)
        async with self.world.changed:
            self.world.changed.notify_all()
        return web.json_response({"ok": True, "result": result})

    async def _delayed_call(
        self, name: str, bot: BotAccount, params: Params, uploads: Uploads, delay: float
    ) -> Any:
        try:
            await asyncio.sleep(delay)
        finally:
            self.world.calls_in_flight[name] -= 1
        try:
            return await self._call(name, bot, params, uploads, None)
        finally:
            async with self.world.changed:  # ran, whether or not anyone is left to read the answer
                self.world.changed.notify_all()

    async def _call(
        self, name: str, bot: BotAccount, params: Params, uploads: Uploads, request: web.Request | None
    ) -> Any:
        """Run one method. A fault with `drop` lets the method run and then closes the connection before
        the answer (see state.Fault): the caller sees a timeout or a reset, and the message exists."""
        self.world.calls.append((name, {k: v for k, v in params.items()}))
        self.world.call_times.append((time.monotonic(), name, str(params.get("chat_id", ""))))
        fault = self.world.take_fault(name, params.get("chat_id"))
        if fault is not None and not fault.drop:
            raise _fault_error(fault)
        handler = _METHODS.get(name) or _METHODS.get(_lower_first(name))
        if handler is None:
            raise ApiError(404, "Not Found: method not found")
        result = await handler(self, bot, params, uploads)
        if fault is not None and fault.drop:
            async with self.world.changed:
                self.world.changed.notify_all()
            if request is not None and request.transport is not None:
                request.transport.close()  # the caller sees the connection die, never the answer
            raise _AnswerLost
        return result

    async def handle_file(self, request: web.Request) -> web.StreamResponse:
        try:
            self.world.bot(request.match_info["token"])
        except ApiError:
            return web.Response(status=401)
        wanted = request.match_info["path"]
        for stored in self.world.files.values():
            if stored.file_path == wanted:
                if self.world.download_delay:  # a slow mobile network, for tests that act mid-download
                    self.world.downloads_in_flight += 1
                    try:
                        await asyncio.sleep(self.world.download_delay)
                    finally:
                        self.world.downloads_in_flight -= 1
                return web.FileResponse(stored.path)
        return web.Response(status=404, text="Not Found")

    # -- webhook delivery ---------------------------------------------------------------------------
    def start_webhook(self, bot: BotAccount) -> None:
        if bot.token not in self._webhook_tasks or self._webhook_tasks[bot.token].done():
            self._webhook_tasks[bot.token] = asyncio.create_task(self._push_loop(bot))

    async def _push_loop(self, bot: BotAccount) -> None:
        """As telegram-bot-api's WebhookActor: one queue per chat, its next update sent only once the one
        before was answered 2xx (order per chat), queues in parallel over up to max_connections."""
        self._http = self._http or aiohttp.ClientSession()
        in_flight: dict[int, asyncio.Task[None]] = {}  # queue (chat) -> the task delivering its oldest update
        changed = asyncio.Event()

        def finished(task: asyncio.Task[None], queue: int, update: dict[str, Any]) -> None:
            in_flight.pop(queue, None)
            if not task.cancelled() and task.exception() is None and update in bot.updates:
                bot.updates.remove(update)
                remaining = [u["update_id"] for u in bot.updates]
                low = min(remaining) if remaining else update["update_id"] + 1
                bot.confirmed_below = max(bot.confirmed_below, low)
            changed.set()

        while bot.webhook_url:
            bot.new_update.clear()  # before the scan: an update added after it sets it again
            changed.clear()
            seen: set[int] = set()
            for update in sorted(bot.updates, key=lambda u: u["update_id"]):
                queue = _queue_of(update)
                if queue in seen:
                    continue  # an older update of this chat is waiting or in flight
                seen.add(queue)
                if queue not in in_flight and len(in_flight) < bot.webhook_max_connections:
                    task = asyncio.create_task(self._deliver(bot, update))
                    in_flight[queue] = task
                    task.add_done_callback(functools.partial(finished, queue=queue, update=update))
            waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(bot.new_update.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
        for task in list(in_flight.values()):
            task.cancel()

    async def _deliver(self, bot: BotAccount, update: dict[str, Any]) -> None:
        assert self._http is not None
        body = {k: v for k, v in update.items() if not k.startswith("_")}
        while bot.webhook_url:
            headers = {"X-Telegram-Bot-Api-Secret-Token": bot.webhook_secret or ""}
            try:
                async with self._http.post(bot.webhook_url, json=body, headers=headers) as resp:
                    if resp.status < 300:
                        return
            except aiohttp.ClientError as exc:
                log.warning("webhook delivery failed: %s", exc)
            await asyncio.sleep(0.2)


class _AnswerLost(Exception):
    """The method ran; its answer is not delivered (a dropped connection)."""


def _queue_of(update: dict[str, Any]) -> int:
    """The chat an update belongs to (telegram-bot-api keys its webhook queues by chat)."""
    for kind in ("message", "edited_message", "callback_query", "my_chat_member", "chat_member"):
        source = update.get(kind)
        if isinstance(source, dict):
            chat = (source.get("message") or source).get("chat") or {}
            sender = source.get("from") or {}
            return int(chat.get("id") or sender.get("id") or 0)
    return 0


LONG_POLL_MAX_TIMEOUT = 50  # telegram-bot-api Client.h
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)


def _clamp(raw: Any, default: int, low: int, high: int) -> int:
    try:
        value = int(raw) if raw not in (None, "") else default
    except (TypeError, ValueError):
        value = default
    return max(low, min(high, value))


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _fault_error(fault: Fault) -> ApiError:
    status, description = fault.status, fault.description
    if status == 429:
        wait = fault.retry_after or 1
        return ApiError(429, description or f"Too Many Requests: retry after {wait}", retry_after=wait)
    if fault.migrate_to_chat_id is not None:
        return ApiError(
            400,
            description or "Bad Request: group chat was upgraded to a supergroup chat",
            migrate_to_chat_id=fault.migrate_to_chat_id,
        )
    default = "Internal Server Error" if status >= 500 else "Bad Request"
    return ApiError(status, description or default, html=fault.html)


async def _read_params(request: web.Request) -> tuple[Params, Uploads]:
    params: Params = dict(request.query)
    uploads: Uploads = {}
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params, uploads
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                uploads[key] = (value.file.read(), value.filename)
            else:
                params[key] = value
    for key in _JSON_FIELDS & params.keys():
        if isinstance(params[key], str) and key != "reply_markup":
            with contextlib.suppress(ValueError):
                params[key] = json.loads(params[key])
    return params, uploads


_KIND_OF_FOLDER = {folder: kind for _field, folder, kind, _suffix in _MEDIA.values()}
_TDLIB_TYPE = {"voice": "VoiceNote", "audio": "Audio", "document": "Document", "photo": "Photo"}


def _resent_kind(file_path: str, wanted: str) -> str:
    """What a file already on Telegram becomes when sent again by file_id. tdlib checks only the class of
    file type (td/telegram/files/FileManager.cpp, check_input_file_id: "Can't use file of type X as Y"
    unless both are document-class types: voice notes, audio, documents, videos, ...), and the server
    re-sends the stored document unchanged, its attributes included: an audio file given to sendVoice
    arrives as a music player, a document as a file. A photo and a document-class file do not mix."""
    stored = _KIND_OF_FOLDER.get(file_path.split("/", 1)[0], wanted)
    if stored == wanted:
        return wanted
    if "photo" in (stored, wanted):
        raise ApiError(
            400, f"Bad Request: can't use file of type {_TDLIB_TYPE[stored]} as {_TDLIB_TYPE[wanted]}"
        )
    return stored


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415  Pillow: only for photo sizes

    try:
        with Image.open(path) as image:
            return image.size
    except UnidentifiedImageError as exc:
        raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from exc


def _outgoing_chat(world: World, params: Params, content: str | None = None) -> Chat:
    """The chat a call writes to, or the refusal Telegram gives. `content` names a new message's kind in
    tdlib's wording ("text messages", "voice notes", ...) for the checks that only sending makes."""
    if params.get("chat_id") in (None, ""):
        raise ApiError(400, "Bad Request: chat_id is empty")
    chat = world.chat(params["chat_id"])
    # telegram-bot-api Client.cpp turns these MTProto refusals into 403s: USER_IS_BLOCKED, INPUT_USER_DEACTIVATED,
    # and a group the bot was removed from (CHAT_WRITE_FORBIDDEN / kicked).
    if chat.type == "private" and chat.blocked_bot:
        raise ApiError(403, "Forbidden: bot was blocked by the user")
    if chat.type == "private" and chat.deactivated:
        raise ApiError(403, "Forbidden: user is deactivated")
    if chat.type != "private" and chat.bot_kicked:
        kind = "supergroup" if chat.type == "supergroup" else "group"
        raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
    if content is not None and chat.type == "private" and not chat.started_bot:
        # tdlib: 403 "Bot can't initiate conversation with a user"; Client.cpp fail_query_with_error keeps a
        # 403 whose text is not an UPPER_CASE server code and lowercases its first letter.
        raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
    if content is not None and chat.type != "private" and not chat.bot_can_send:
        # tdlib MessageContent.cpp can_send_message_content: "Not enough rights to send <kind> to the chat" (400).
        raise ApiError(400, f"Bad Request: not enough rights to send {content} to the chat")
    return chat


def _summary_buttons(markup: dict[str, Any] | None) -> str:
    if not markup or "inline_keyboard" not in markup:
        return ""
    rows = [" | ".join(b["text"] for b in row) for row in markup["inline_keyboard"]]
    return "\n" + "\n".join(f"  [{row}]" for row in rows)


def _attach_markup(message: dict[str, Any], markup: dict[str, Any] | None) -> None:
    """Telegram echoes only inline keyboards in the sent message; reply keyboards stay with the chat."""
    if markup and "inline_keyboard" in markup:
        message["reply_markup"] = markup
    elif markup:
        message["_keyboard"] = markup


def _editable(message: dict[str, Any], bot: BotAccount, *, text: bool = False) -> None:
    """tdlib's MessagesManager::can_edit_message: only the bot's own outgoing messages can be edited, and a
    message sent with a reply keyboard (or a keyboard removal / force reply) never; only inline keyboards
    travel with editable messages. editMessageText needs a text message (telegram-bot-api Client.cpp answers
    "there is no text in the message to edit" for media; their captions go through editMessageCaption)."""
    if (message.get("from") or {}).get("id") != bot.id or "_keyboard" in message:
        raise ApiError(400, "Bad Request: message can't be edited")
    if text and "text" not in message:
        raise ApiError(400, "Bad Request: there is no text in the message to edit")


def _from_bot(bot: BotAccount) -> dict[str, Any]:
    return {"id": bot.id, "is_bot": True, "first_name": bot.first_name, "username": bot.username}


# -- methods --------------------------------------------------------------------------------------
@method("getMe")
async def get_me(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    return bot.me()


@method("getUpdates")
async def get_updates(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    if bot.webhook_url:
        raise ApiError(
            409,
            "Conflict: can't use getUpdates method while webhook is active; "
            "use deleteWebhook to delete the webhook first",
        )
    offset = int(params["offset"]) if params.get("offset") not in (None, "") else None
    # Client.cpp: get_integer_arg("limit", 100, 1, 100) and ("timeout", 0, 0, LONG_POLL_MAX_TIMEOUT = 50):
    # out-of-range values are clamped, never refused.
    if isinstance(params.get("allowed_updates"), list):  # kept until the next call that names them
        bot.allowed_updates = [str(kind) for kind in params["allowed_updates"]] or None
    limit = _clamp(params.get("limit"), 100, 1, 100)
    timeout = _clamp(params.get("timeout"), 0, 0, LONG_POLL_MAX_TIMEOUT)
    # Client.cpp: a getUpdates arriving while another long poll waits ends the waiting one with 409
    # "terminated by other getUpdates request" (two processes polling one token fight like this).
    if bot.active_poll is not None:
        bot.active_poll.set()
    mine = bot.active_poll = asyncio.Event()
    try:
        updates = api.world.take_updates(bot, offset, limit)
        async with api.world.changed:  # the offset confirmed updates just now: waiters may look at once
            api.world.changed.notify_all()
        if not updates and timeout > 0:
            waits = [asyncio.ensure_future(bot.new_update.wait()), asyncio.ensure_future(mine.wait())]
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
            if mine.is_set():
                raise ApiError(409, POLL_CONFLICT)
            updates = api.world.take_updates(bot, None, limit)
        return updates
    finally:
        if bot.active_poll is mine:
            bot.active_poll = None


@method("setWebhook")
async def set_webhook(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    """As telegram-bot-api's Client::process_set_webhook_query (telegram-bot-api/Client.cpp):
    - a URL less than a second after the last accepted one gets 429 "Too Many Requests: retry after 1"
      (`next_allowed_set_webhook_time_`, `query->set_retry_after_error(1)`; an empty URL is not limited);
    - a call still verifying its URL when another arrives answers 409 "Conflict: terminated by other
      setWebhook" (`fail_query_conflict(..., std::move(webhook_set_query_))`), and the new one goes on;
    - otherwise the same URL and settings again answers at once ("Webhook is already set");
    - a new URL is verified (the server connects to it, Client::webhook_verified) before the answer:
      `world.webhook_verify_seconds` here.
    Processes starting together and each calling setWebhook meet the first two."""
    url = str(params.get("url") or "")
    now = time.monotonic()
    if url:
        if now < bot.next_set_webhook_at:
            raise ApiError(429, "Too Many Requests: retry after 1", retry_after=1)
        bot.next_set_webhook_at = now + 1
    if url and not url.startswith(("http://", "https://")):
        raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
    drop = str(params.get("drop_pending_updates", "")).lower() == "true"
    secret = params.get("secret_token") or None
    max_connections = _clamp(params.get("max_connections"), 40, 1, 100)
    if isinstance(params.get("allowed_updates"), list):
        bot.allowed_updates = [str(kind) for kind in params["allowed_updates"]] or None
    if bot.webhook_verifying is not None:  # already updating the webhook: the earlier call is cancelled
        bot.webhook_verifying.set()
        bot.webhook_verifying = None
    elif (
        (url or None) == bot.webhook_url
        and secret == bot.webhook_secret
        and max_connections == bot.webhook_max_connections
        and not drop
    ):
        return True  # "Webhook is already set" / "Webhook is already deleted"
    if drop:
        bot.updates.clear()
    bot.webhook_url = url or None
    bot.webhook_secret = secret
    bot.webhook_max_connections = max_connections
    if not bot.webhook_url:
        return True
    if api.world.webhook_verify_seconds > 0:
        mine = bot.webhook_verifying = asyncio.Event()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(mine.wait(), api.world.webhook_verify_seconds)
        finally:
            if bot.webhook_verifying is mine:
                bot.webhook_verifying = None
        if mine.is_set():
            raise ApiError(409, "Conflict: terminated by other setWebhook")
    api.start_webhook(bot)
    return True


@method("deleteWebhook")
async def delete_webhook(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    if bot.webhook_verifying is not None:  # deleteWebhook is process_set_webhook_query with no URL
        bot.webhook_verifying.set()
        bot.webhook_verifying = None
    if str(params.get("drop_pending_updates", "")).lower() == "true":
        bot.updates.clear()
    bot.webhook_url = None
    bot.webhook_secret = None
    return True


@method("getWebhookInfo")
async def get_webhook_info(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    return {
        "url": bot.webhook_url or "",
        "has_custom_certificate": False,
        "pending_update_count": len(bot.updates),
    }


@method("setMyCommands")
async def set_my_commands(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    commands = params.get("commands")
    if not isinstance(commands, list):
        raise ApiError(400, "Bad Request: can't parse commands JSON object")
    bot.commands[str(params.get("language_code") or "")] = commands
    return True


@method("deleteMyCommands")
async def delete_my_commands(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    bot.commands.pop(str(params.get("language_code") or ""), None)
    return True


@method("sendChatAction")
async def send_chat_action(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    _outgoing_chat(api.world, params)
    return True


@method("sendMessage")
async def send_message(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    chat = _outgoing_chat(api.world, params, "text messages")
    text = str(params.get("text") or "")
    # The text as Telegram keeps it: markup parsed, cleaned and trimmed (markup.formatted_text).
    visible, entities = formatted_text(text, params.get("parse_mode"))
    markup = parse_markup(params.get("reply_markup"))
    message: dict[str, Any] = {"from": _from_bot(bot), "text": visible, "_raw": text, "_entities": entities}
    _attach_markup(message, markup)
    stored = api.world.add_message(chat, message, "out", visible + _summary_buttons(markup))
    return _public(stored)


async def _send_media(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads, name: str) -> Any:
    chat = _outgoing_chat(api.world, params, _RIGHTS[name])
    if name == "sendVoice" and chat.voice_forbidden:
        # The person allows voice notes from contacts only: one of state.VOICE_REFUSALS (tdlib's own check in
        # MessageContent.cpp can_send_message_content, or the server's VOICE_MESSAGES_FORBIDDEN).
        raise ApiError(400, chat.voice_refusal)
    field_name, folder, kind, suffix = _MEDIA[name]
    ref = params.get(field_name)
    if ref is None or ref == "":
        raise ApiError(400, f"Bad Request: there is no {field_name} in the request")
    ref = str(ref)
    if ref.startswith("attach://"):
        key = ref.removeprefix("attach://")
        if key not in uploads:
            raise ApiError(400, "Bad Request: file must be non-empty")
        data, filename = uploads[key]
        if not data:
            raise ApiError(400, "Bad Request: file must be non-empty")
        stored_file = api.world.store_file(data, folder, Path(filename or "").suffix or suffix)
        original_name = filename
    elif ref in api.world.files:
        stored_file = api.world.files[ref]
        original_name = stored_file.path.name
        kind = _resent_kind(stored_file.file_path, kind)
    elif ref.startswith(("http://", "https://")):
        raise ApiError(400, "Bad Request: failed to get HTTP URL content")
    else:
        raise ApiError(400, "Bad Request: wrong remote file identifier specified: Wrong string length")
    caption = params.get("caption")
    visible_caption = check_text(str(caption), params.get("parse_mode"), caption=True) if caption else None
    markup = parse_markup(params.get("reply_markup"))
    obj: dict[str, Any] = {
        "file_id": stored_file.file_id,
        "file_unique_id": stored_file.file_unique_id,
        "file_size": stored_file.size,
    }
    if kind in ("voice", "audio"):
        obj["duration"] = int(params.get("duration") or 0)
        obj["mime_type"] = (
            "audio/ogg" if kind == "voice" else (mimetypes.guess_type(original_name or "")[0] or "audio/mpeg")
        )
    if kind == "photo":
        # PhotoSize requires width and height (tdlib reports the stored size); one size stands in for the set.
        obj["width"], obj["height"] = _image_size(stored_file.path)
    if kind == "document":
        obj["file_name"] = original_name
        obj["mime_type"] = mimetypes.guess_type(original_name or "")[0] or "application/octet-stream"
    message: dict[str, Any] = {"from": _from_bot(bot), kind: [obj] if kind == "photo" else obj}
    if visible_caption:
        message["caption"] = visible_caption
    _attach_markup(message, markup)
    summary = f"<{kind} {stored_file.size} bytes>" + (f" {visible_caption}" if visible_caption else "")
    stored = api.world.add_message(chat, message, "out", summary + _summary_buttons(markup))
    return _public(stored)


for _name in _MEDIA:

    async def _media_handler(
        api: BotApi, bot: BotAccount, params: Params, uploads: Uploads, _n: str = _name
    ) -> Any:
        return await _send_media(api, bot, params, uploads, _n)

    _METHODS[_name] = _media_handler


@method("editMessageText")
async def edit_message_text(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    chat = _outgoing_chat(api.world, params)
    message = api.world.find_message(chat, params.get("message_id"), "edit")
    _editable(message, bot, text=True)
    text = str(params.get("text") or "")
    visible, entities = formatted_text(text, params.get("parse_mode"))
    markup = parse_markup(params.get("reply_markup"))
    # tdlib MessagesManager edit_message_text: "not modified" means the same text *and* the same entities
    # (bold to plain is a change) and the same markup. Both sides are compared after fix_formatted_text
    # trimmed them, so "Score: 5\n" over "Score: 5" is not modified either.
    same_text = message.get("text") == visible and message.get("_entities", []) == entities
    if same_text and message.get("reply_markup") == markup:
        raise ApiError(
            400,
            "Bad Request: message is not modified: specified new message content and reply "
            "markup are exactly the same as a current content and reply markup of the message",
        )
    message["text"], message["_raw"], message["_entities"] = visible, text, entities
    message["edit_date"] = message["date"]
    if markup:
        message["reply_markup"] = markup
    else:
        message.pop("reply_markup", None)
    chat.log.append(("edit", message["message_id"], visible + _summary_buttons(markup)))
    return _public(message)


@method("editMessageReplyMarkup")
async def edit_message_reply_markup(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    chat = _outgoing_chat(api.world, params)
    message = api.world.find_message(chat, params.get("message_id"), "edit")
    _editable(message, bot)
    markup = parse_markup(params.get("reply_markup"))
    if message.get("reply_markup") == markup:
        raise ApiError(
            400,
            "Bad Request: message is not modified: specified new message content and reply "
            "markup are exactly the same as a current content and reply markup of the message",
        )
    if markup:
        message["reply_markup"] = markup
    else:
        message.pop("reply_markup", None)
    chat.log.append(("edit", message["message_id"], "(buttons)" + _summary_buttons(markup)))
    return _public(message)


@method("deleteMessage")
async def delete_message(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    chat = api.world.chat(params.get("chat_id"))
    message = api.world.find_message(chat, params.get("message_id"), "delete")
    message["_deleted"] = True
    chat.log.append(("delete", message["message_id"], ""))
    return True


@method("answerCallbackQuery")
async def answer_callback_query(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    query_id = str(params.get("callback_query_id") or "")
    pressed = api.world.pending_callbacks.pop(query_id, None)
    if pressed is None or time.monotonic() - pressed > api.world.callback_ttl:
        # QUERY_ID_INVALID as telegram-bot-api words it: unknown, already answered, or answered too late.
        raise ApiError(
            400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
        )
    if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER:
        # The notification/alert text is 0-200 characters; longer is refused by the server, not cut.
        api.world.pending_callbacks[query_id] = pressed
        raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
    api.world.callback_answers[query_id] = {
        "text": params.get("text"),
        "show_alert": str(params.get("show_alert", "")).lower() == "true",
    }
    return True


@method("getFile")
async def get_file(api: BotApi, bot: BotAccount, params: Params, uploads: Uploads) -> Any:
    stored = api.world.file(str(params.get("file_id") or ""))
    if stored.size > MAX_DOWNLOAD_BYTES:
        raise ApiError(400, "Bad Request: file is too big")
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": stored.size,
        "file_path": stored.file_path,
    }


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}
