"""The Bot API stand-in answers like Telegram: checked with a plain aiogram Bot over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from telegram_standin import StandIn
from tests.conftest import TOKEN


def _keyboard(data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Go", callback_data=data)]])


async def test_get_me_and_token_check(tg: StandIn, raw_bot: Bot) -> None:
    me = await raw_bot.get_me()
    assert me.id == 123456 and me.is_bot and me.username
    bad = Bot("999:x", session=AiohttpSession(api=tg.api_server))
    try:
        bad_me = await bad.get_me()  # any well-formed token is a bot here
        assert bad_me.id == 999
    finally:
        await bad.session.close()


async def test_send_validation_matches_telegram(tg: StandIn, raw_bot: Bot) -> None:
    user = tg.user(10, "Ann", token=TOKEN)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await raw_bot.send_message(424242, "hi")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await raw_bot.send_message(user.id, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await raw_bot.send_message(user.id, "hi", reply_markup=_keyboard("d" * 65))
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await raw_bot.send_message(user.id, "<b>open", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="text must be non-empty"):  # td fix_formatted_text (#27)
        await raw_bot.send_message(user.id, "   ")
    sent = await raw_bot.send_message(user.id, "<b>bold</b> &amp; fine", parse_mode="HTML")
    assert user.last()["text"] == "bold & fine"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):  # same text, same bold
        await raw_bot.edit_message_text(
            "<b>bold</b> &amp; fine", chat_id=user.id, message_id=sent.message_id, parse_mode="HTML"
        )
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await raw_bot.edit_message_text("x", chat_id=user.id, message_id=999)
    user.block_bot()
    with pytest.raises(TelegramForbiddenError, match="blocked by the user"):
        await raw_bot.send_message(user.id, "still there?")


async def test_injected_flood_limit_carries_retry_after(tg: StandIn, raw_bot: Bot) -> None:
    user = tg.user(11, "Ann", token=TOKEN)
    tg.fail_next("sendMessage", status=429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as caught:
        await raw_bot.send_message(user.id, "hi")
    assert caught.value.retry_after == 7
    await raw_bot.send_message(user.id, "hi")
    assert user.last()["text"] == "hi"


async def test_files_round_trip_and_size_limit(tg: StandIn, raw_bot: Bot, tmp_path: Path) -> None:
    user = tg.user(12, "Ann", token=TOKEN)
    payload = b"OggS" + bytes(range(256)) * 10
    sent = await raw_bot.send_voice(user.id, BufferedInputFile(payload, "note.ogg"), caption="card")
    assert sent.voice is not None and user.last()["caption"] == "card"
    again = await raw_bot.send_voice(user.id, sent.voice.file_id)  # re-sent by file_id
    assert again.voice is not None and again.voice.file_id == sent.voice.file_id
    file = await raw_bot.get_file(sent.voice.file_id)
    assert file.file_path is not None
    target = tmp_path / "down.ogg"
    await raw_bot.download_file(file.file_path, destination=target)
    assert target.read_bytes() == payload

    big = tmp_path / "big.ogg"
    big.write_bytes(b"\0" * (20 * 1024 * 1024 + 1))
    update = await user.send_voice(big, duration=5)
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await raw_bot.get_file(update["message"]["voice"]["file_id"])
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await raw_bot.get_file("nope")


async def test_updates_are_sequenced_and_confirmed(tg: StandIn, raw_bot: Bot) -> None:
    user = tg.user(13, "Ann", token=TOKEN)
    await user.send_text("one")
    await user.send_text("two")
    first = await raw_bot.get_updates(timeout=0)
    assert [u.message.text for u in first if u.message] == ["one", "two"]
    assert first[1].update_id == first[0].update_id + 1
    assert len(await raw_bot.get_updates(timeout=0)) == 2  # not confirmed yet
    assert await raw_bot.get_updates(offset=first[-1].update_id + 1, timeout=0) == []
    await raw_bot.set_webhook("https://example.invalid/hook")
    with pytest.raises(TelegramConflictError):
        await raw_bot.get_updates(timeout=0)
    await raw_bot.delete_webhook()


async def test_callback_answer_and_unknown_query(tg: StandIn, raw_bot: Bot) -> None:
    user = tg.user(14, "Ann", token=TOKEN)
    await raw_bot.send_message(user.id, "pick", reply_markup=_keyboard("choice:1"))
    query_id = await user.press(user.last(), "Go")
    updates = await raw_bot.get_updates(timeout=0)
    query = updates[-1].callback_query
    assert query is not None and query.data == "choice:1" and query.from_user.id == user.id
    await raw_bot.answer_callback_query(query_id, text="ok", show_alert=True)
    assert (await user.callback_answer(query_id)) == {"text": "ok", "show_alert": True}
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await raw_bot.answer_callback_query(query_id)


async def test_messages_with_a_reply_keyboard_cannot_be_edited(tg: StandIn, raw_bot: Bot) -> None:
    """tdlib MessagesManager::can_edit_message returns false when `m->reply_markup->type !=
    ReplyMarkup::Type::InlineKeyboard`; the Bot API answers "Bad Request: message can't be edited" (issue #14,
    item 12). Messages with an inline keyboard, or none, stay editable."""
    from aiogram.types import KeyboardButton, ReplyKeyboardMarkup

    user = tg.user(11, "Bea", token=TOKEN)
    menu = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="Menu")]], resize_keyboard=True)
    with_menu = await raw_bot.send_message(user.id, "receipt", reply_markup=menu)
    assert with_menu.reply_markup is None  # Telegram does not echo reply keyboards in the sent message
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await raw_bot.edit_message_text("receipt, reviewed", chat_id=user.id, message_id=with_menu.message_id)
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await raw_bot.edit_message_reply_markup(
            chat_id=user.id, message_id=with_menu.message_id, reply_markup=_keyboard("x")
        )
    plain = await raw_bot.send_message(user.id, "receipt")
    edited = await raw_bot.edit_message_text(
        "receipt, reviewed", chat_id=user.id, message_id=plain.message_id
    )
    assert not isinstance(edited, bool) and edited.text == "receipt, reviewed"
    inline = await raw_bot.send_message(user.id, "card", reply_markup=_keyboard("y"))
    await raw_bot.edit_message_text("card, rated", chat_id=user.id, message_id=inline.message_id)


async def test_photo_sizes_carry_width_and_height(tg: StandIn, raw_bot: Bot) -> None:
    """tdlib/telegram-bot-api Client.cpp, class JsonPhotoSize: every PhotoSize is stored with "width" and
    "height" (required fields of the Bot API's PhotoSize; aiogram refuses a result without them)."""
    from services.surveys import qr_png

    person = tg.user(801, "Ann", token=TOKEN, language_code="en")
    png = qr_png("https://t.me/example_bot?start=s_x")
    sent = await raw_bot.send_photo(person.id, BufferedInputFile(png, "code.png"), caption="scan me")
    assert sent.photo is not None
    [size] = sent.photo
    import io

    from PIL import Image

    assert (size.width, size.height) == Image.open(io.BytesIO(png)).size
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await raw_bot.send_photo(person.id, BufferedInputFile(b"not an image", "x.png"))


async def test_group_upgraded_to_supergroup_says_where_it_went(tg: StandIn, raw_bot: Bot) -> None:
    """A 400 "Bad Request: group chat was upgraded to a supergroup chat" with parameters.migrate_to_chat_id
    (Bot API ResponseParameters); aiogram turns it into TelegramMigrateToChat carrying the new id."""
    from aiogram.exceptions import TelegramMigrateToChat

    tg.group(-500, "Managers", token=TOKEN)
    tg.fail_next("sendMessage", status=400, migrate_to_chat_id=-1000000000500)
    with pytest.raises(TelegramMigrateToChat) as caught:
        await raw_bot.send_message(-500, "hello")
    assert caught.value.migrate_to_chat_id == -1000000000500
    assert "upgraded to a supergroup" in caught.value.message


async def test_what_can_be_edited_as_text(tg: StandIn, raw_bot: Bot) -> None:
    """tdlib MessagesManager::can_edit_message: only the bot's own outgoing messages ("message can't be
    edited" for a person's message); telegram-bot-api Client.cpp answers "there is no text in the message to
    edit" when editMessageText targets a media message (its caption has editMessageCaption)."""
    user = tg.user(15, "Ann", token=TOKEN)
    theirs = await user.send_text("hello bot")
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await raw_bot.edit_message_text(
            "hijacked", chat_id=user.id, message_id=theirs["message"]["message_id"]
        )
    voice = await raw_bot.send_voice(user.id, BufferedInputFile(b"OggS" + b"\0" * 64, "v.ogg"))
    with pytest.raises(TelegramBadRequest, match="there is no text in the message to edit"):
        await raw_bot.edit_message_text("now text", chat_id=user.id, message_id=voice.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await raw_bot.edit_message_text("gone", chat_id=user.id, message_id=999)


async def test_not_modified_compares_formatting_too(tg: StandIn, raw_bot: Bot) -> None:
    """tdlib MessagesManager (edit_message_text): a new text is compared with its entities, so bold to plain
    is an edit; only the same text, the same entities and the same markup are "message is not modified".
    Synonym tags make the same entity (MessageEntity.cpp parse_html: <strong> is bold)."""
    user = tg.user(16, "Ann", token=TOKEN)
    sent = await raw_bot.send_message(user.id, "<b>Score</b>: 5", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await raw_bot.edit_message_text(
            "<strong>Score</strong>: 5", chat_id=user.id, message_id=sent.message_id, parse_mode="HTML"
        )
    edited = await raw_bot.edit_message_text("Score: 5", chat_id=user.id, message_id=sent.message_id)
    assert not isinstance(edited, bool) and edited.text == "Score: 5"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await raw_bot.edit_message_text("Score: 5", chat_id=user.id, message_id=sent.message_id)


async def test_text_empty_after_parsing(tg: StandIn, raw_bot: Bot) -> None:
    """Only an empty text is "message text is empty" (Client.cpp get_input_message_text checks text.empty());
    whitespace only, or markup that leaves only whitespace, is "text must be non-empty" (tdlib
    MessageEntity.cpp fix_formatted_text, after clean_input_string made the tab a space; issue #27)."""
    user = tg.user(17, "Ann", token=TOKEN)
    with pytest.raises(TelegramBadRequest, match="text must be non-empty"):
        await raw_bot.send_message(user.id, " \n\t ")
    with pytest.raises(TelegramBadRequest, match="text must be non-empty"):
        await raw_bot.send_message(user.id, "<b> </b>", parse_mode="HTML")


async def test_callback_answers_expire_and_are_at_most_200_characters(tg: StandIn, raw_bot: Bot) -> None:
    """answerCallbackQuery: the notification text is 0-200 characters (Bot API; the server answers
    MESSAGE_TOO_LONG and the query stays answerable), and a query is answerable once, for a short while:
    later the server says QUERY_ID_INVALID, worded by Client.cpp as "query is too old and response timeout
    expired or query ID is invalid"."""
    user = tg.user(18, "Ann", token=TOKEN)
    await raw_bot.send_message(user.id, "pick", reply_markup=_keyboard("choice:1"))
    query_id = await user.press(user.last(), "Go")
    with pytest.raises(TelegramBadRequest, match="MESSAGE_TOO_LONG"):
        await raw_bot.answer_callback_query(query_id, text="x" * 201)
    assert await raw_bot.answer_callback_query(query_id, text="x" * 200)
    late = await user.press(user.last(), "Go")
    tg.world.callback_ttl = 0.0
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await raw_bot.answer_callback_query(late)


async def test_get_updates_clamps_limit_and_timeout(tg: StandIn, raw_bot: Bot) -> None:
    """telegram-bot-api Client.cpp process_get_updates_query: get_integer_arg("limit", 100, 1, 100) and
    ("timeout", 0, 0, LONG_POLL_MAX_TIMEOUT) with LONG_POLL_MAX_TIMEOUT = 50 (Client.h): out-of-range values
    are clamped, not refused."""
    from aiogram.methods import GetUpdates

    user = tg.user(19, "Ann", token=TOKEN)
    for n in range(3):
        await user.send_text(f"m{n}")
    assert len(await raw_bot(GetUpdates(limit=0, timeout=-5))) == 1  # limit 0 is 1; timeout -5 is 0
    assert len(await raw_bot(GetUpdates(limit=1000, timeout=0))) == 3


async def test_voice_messages_forbidden_and_403_variants(tg: StandIn, raw_bot: Bot) -> None:
    """A person who accepts voice notes from contacts only: sendVoice fails with "Bad Request:
    VOICE_MESSAGES_FORBIDDEN" (the server's error passed through), a document still goes. The 403s a bot
    meets (Client.cpp's wording of USER_IS_BLOCKED, INPUT_USER_DEACTIVATED, a group that removed the bot)."""
    user = tg.user(20, "Ann", token=TOKEN)
    user.forbid_voice_messages()
    audio = BufferedInputFile(b"OggS" + b"\0" * 64, "v.ogg")
    with pytest.raises(TelegramBadRequest, match="VOICE_MESSAGES_FORBIDDEN"):
        await raw_bot.send_voice(user.id, audio)
    document = await raw_bot.send_document(user.id, audio)
    assert document.document is not None
    gone = tg.user(21, "Bob", token=TOKEN)
    gone.chat.deactivated = True
    with pytest.raises(TelegramForbiddenError, match="user is deactivated"):
        await raw_bot.send_message(gone.id, "hi")
    group = tg.group(-700, "Reviewers", token=TOKEN)
    group.chat.bot_kicked = True
    with pytest.raises(TelegramForbiddenError, match=r"bot was kicked from the (super)?group chat"):
        await raw_bot.send_message(-700, "hi")


async def test_allowed_updates_are_kept_until_changed(tg: StandIn, raw_bot: Bot) -> None:
    """Bot API getUpdates/setWebhook allowed_updates: the list holds for later calls that do not name it, and
    update kinds left out are not kept for the bot (the bot must ask for edited_message to hear of edits)."""
    from aiogram.methods import GetUpdates

    user = tg.user(22, "Ann", token=TOKEN)
    assert await raw_bot(GetUpdates(timeout=0, allowed_updates=["message"])) == []
    sent = await user.send_text("first")
    await user.edit_text(sent, "first, edited")
    kinds = [u.event_type for u in await raw_bot(GetUpdates(timeout=0))]
    assert kinds == ["message"]
    await raw_bot(
        GetUpdates(offset=sent["update_id"] + 1, timeout=0, allowed_updates=["message", "edited_message"])
    )
    await user.edit_text(sent, "edited again")
    kinds = [u.event_type for u in await raw_bot(GetUpdates(timeout=0))]
    assert kinds == ["edited_message"]


async def test_html_parsing_follows_tdlib(tg: StandIn, raw_bot: Bot) -> None:
    """Cases from tdlib/td test/message_entities.cpp (TEST(MessageEntities, parse_html)): only &lt; &gt;
    &amp; &quot; and numeric references are decoded (&laquo; stays as written), an empty entity is dropped,
    and the errors name the tag and its byte offset; the Bot API prefixes them with "can't parse entities"."""
    user = tg.user(23, "Ann", token=TOKEN)
    sent = await raw_bot.send_message(
        user.id, "&lt;&gt;&amp;&quot;&laquo;&raquo;&#12345678;", parse_mode="HTML"
    )
    assert sent.text == '<>&"&laquo;&raquo;&#12345678;'
    sent = await raw_bot.send_message(user.id, "🏟 🏟<i>🏟 &lt🏟</i><b></b>", parse_mode="HTML")
    assert sent.text == "🏟 🏟🏟 <🏟"
    for html, error in (
        ("🏟 🏟&lt;<abac>", 'Unsupported start tag "abac" at byte offset 13'),
        ("🏟 🏟&lt;<i>a</em   >", 'Unmatched end tag at byte offset 17, expected "</i>", found "</em>"'),
        ("🏟 🏟&lt;<b></b></b>", "Unexpected end tag at byte offset 20"),
    ):
        with pytest.raises(TelegramBadRequest) as caught:
            await raw_bot.send_message(user.id, html, parse_mode="HTML")
        assert caught.value.message == f"Bad Request: can't parse entities: {error}"


async def test_webhook_delivers_chats_in_parallel_and_each_chat_in_order(tg: StandIn, raw_bot: Bot) -> None:
    """telegram-bot-api's WebhookActor keeps one queue per chat: a chat's next update goes only once the
    one before was answered 2xx, other chats' updates go meanwhile, up to max_connections at once."""
    import asyncio

    from aiohttp import web

    arrived: list[str] = []
    release_first = asyncio.Event()

    async def endpoint(request: web.Request) -> web.Response:
        update = await request.json()
        text = update["message"]["text"]
        arrived.append(text)
        if text == "a1":
            await release_first.wait()  # chat A's first update is slow to handle
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        assert await raw_bot.set_webhook(f"http://127.0.0.1:{port}/hook", max_connections=40)
        alice, bob = tg.user(7001, "Alice", token=TOKEN), tg.user(7002, "Bob", token=TOKEN)
        await alice.send_text("a1")
        await alice.send_text("a2")
        await bob.send_text("b1")
        async with asyncio.timeout(5):
            while "b1" not in arrived:  # noqa: ASYNC110 - the endpoint's list, no event to await
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert arrived == ["a1", "b1"]  # Bob's went beside Alice's slow one; Alice's second waits
        release_first.set()
        async with asyncio.timeout(5):
            while "a2" not in arrived:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert arrived == ["a1", "b1", "a2"]
        info = await raw_bot.get_webhook_info()
        async with asyncio.timeout(5):
            while info.pending_update_count:
                await asyncio.sleep(0.02)
                info = await raw_bot.get_webhook_info()
    finally:
        await raw_bot.delete_webhook()
        await runner.cleanup()


async def test_a_second_long_poll_ends_the_first_with_a_conflict(tg: StandIn, raw_bot: Bot) -> None:
    """As telegram-bot-api: two processes polling one token fight; the waiting poll gets 409 at once."""
    import asyncio

    first = asyncio.create_task(raw_bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(raw_bot.get_updates(timeout=1))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, 2)
    assert await second == []
