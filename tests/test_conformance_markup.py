"""Issue #27, findings 7 and 11: the stand-in refuses and trims what the real Bot API server does, so that a
bot passing here does not fail on Telegram.

Sources (read for this file):
- tdlib/td td/telegram/MessageEntity.cpp `parse_html` / `decode_html_entity` (HTML parse mode) and
  `fix_formatted_text` (cleaning, trimming, "Text must be non-empty"); the parser cases below are the ones of
  tdlib/td test/message_entities.cpp TEST(MessageEntities, parse_html).
- tdlib/td td/telegram/ReplyMarkup.cpp `get_reply_markup`: empty-text buttons skipped, 12 per row, 300 in all.
- tdlib/telegram-bot-api telegram-bot-api/Client.cpp `get_input_message_text`, `get_reply_markup`,
  `get_inline_keyboard_button`, `fail_query_with_error` (prefix, first letter lowercased, 403 kept).
"""

from __future__ import annotations

from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.db import Database
from telegram_standin import StandIn
from telegram_standin.markup import parse_html
from telegram_standin.state import ApiError
from tests.conftest import ADMIN_ID, TOKEN

# -- finding 7: the HTML parse mode --------------------------------------------------------------------
REFUSED = [  # what the old stand-in let through; tdlib MessageEntity.cpp parse_html refuses each
    ("line<br>break", 'Unsupported start tag "br" at byte offset 4'),
    ("line<br/>break", 'Unsupported start tag "br/" at byte offset 4'),
    ("a < b", 'Unsupported start tag "" at byte offset 2'),
    ("1<2 and 3>2", 'Unsupported start tag "2" at byte offset 1'),
    ("x<=y, y>z", 'Unsupported start tag "=y," at byte offset 1'),
    ("score <5", "Unclosed start tag at byte offset 6"),
    ("<!-- note -->text", 'Unsupported start tag "!--" at byte offset 0'),
    ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ('<span class="bold">x</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ("<p>para</p>", 'Unsupported start tag "p" at byte offset 0'),
    ("<tg-emoji emoji-id=abc>x</tg-emoji>", "Invalid custom emoji identifier specified"),
]


@pytest.mark.parametrize(("html", "error"), REFUSED)
async def test_html_that_tdlib_refuses_is_refused(tg: StandIn, raw_bot: Bot, html: str, error: str) -> None:
    """tdlib's tag set is a, b, strong, i, em, s, strike, del, u, ins, tg-spoiler, tg-emoji, span (class
    tg-spoiler only), pre, code, blockquote; a `<` opens a tag whatever follows it."""
    user = tg.user(70, "Ann", token=TOKEN)
    with pytest.raises(TelegramBadRequest) as caught:
        await raw_bot.send_message(user.id, html, parse_mode="HTML")
    assert caught.value.message == f"Bad Request: can't parse entities: {error}"


TDLIB_ERRORS = [  # test/message_entities.cpp, error cases (the newer parser takes attributes without "=")
    ("&#57311;", "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched "
     "surrogate code units"),
    ("🏟 🏟&lt;<abacaba", "Unclosed start tag at byte offset 13"),
    ("🏟 🏟&lt;<abac aba>", 'Unsupported start tag "abac" at byte offset 13'),
    ("🏟 🏟&lt;<i   =aba>", 'Empty attribute name in the tag "i" at byte offset 13'),
    ("🏟 🏟&lt;<i    aba  =  ", 'Unclosed start tag "i" at byte offset 13'),
    ("🏟 🏟&lt;<i    aba  =  190azAz-.,", "Unexpected end of name token at byte offset 27"),
    ('🏟 🏟&lt;<i    aba  =  "&lt;&gt;&quot;>', "Unclosed start tag at byte offset 13"),
    ("🏟 🏟&lt;</", "Unexpected end tag at byte offset 13"),
    ("🏟 🏟&lt;<b></b></", "Unexpected end tag at byte offset 20"),
    ("🏟 🏟&lt;<i>a</i   ", "Unclosed end tag at byte offset 17"),
    ("🏟 🏟&lt;<i>a</em   >", 'Unmatched end tag at byte offset 17, expected "</i>", found "</em>"'),
]  # fmt: skip
TDLIB_PARSED: list[tuple[str, str, list[tuple[str, int, int, str]]]] = [
    ("&lt;&gt;&amp;&quot;&laquo;&raquo;&#12345678;", '<>&"&laquo;&raquo;&#12345678;', []),
    ("➡️ ➡️<i>➡️ ➡️</i><b>➡️ ➡️</b>", "➡️ ➡️➡️ ➡️➡️ ➡️", [("italic", 5, 5, ""), ("bold", 10, 5, "")]),
    ("🏟 🏟<i>🏟 &gt;<b aba   =   caba>&lt🏟</b></i>", "🏟 🏟🏟 ><🏟", [("italic", 5, 7, ""), ("bold", 9, 3, "")]),
    ("🏟 🏟&lt;<i    aba  =  '&lt;&gt;&quot;'>a</>", "🏟 🏟<a", [("italic", 6, 1, "")]),
    ("🏟 🏟&lt;<i>a</    >", "🏟 🏟<a", [("italic", 6, 1, "")]),
    ("🏟 🏟&lt;<b></b>", "🏟 🏟<", []),
    ("<a   href=  'telegram.org?&lt;'   > </a>", " ", [("text_link", 0, 1, "http://telegram.org/?<")]),
    ("<a>telegram.org </a>", "telegram.org ", []),
    ("<a>telegram.org</a>", "telegram.org", [("text_link", 0, 12, "http://telegram.org/")]),
    ('🏟 🏟&lt;<pre><code class="language-fift">🏟 🏟&lt;</></>', "🏟 🏟<🏟 🏟<", [("pre", 6, 6, "fift")]),
    ('🏟 🏟&lt;<pre><code class="language-fift">🏟 🏟&lt;</> </>', "🏟 🏟<🏟 🏟< ",
     [("pre", 6, 7, ""), ("code", 6, 6, "")]),
    ("<code><i><b> </b></i></code><i><b><code> </code></b></i>", "  ",
     [("code", 0, 1, ""), ("bold", 0, 1, ""), ("italic", 0, 1, ""), ("code", 1, 1, ""), ("bold", 1, 1, ""),
      ("italic", 1, 1, "")]),
    ('<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>', "st", [("spoiler", 0, 1, ""), ("spoiler", 1, 1, "")]),
    ("<blockquote expandable>q</blockquote>", "q", [("expandable_blockquote", 0, 1, "")]),
]  # fmt: skip


@pytest.mark.parametrize(("html", "error"), TDLIB_ERRORS)
def test_parse_html_errors_are_tdlibs(html: str, error: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_html(html)
    assert caught.value.description == f"Bad Request: can't parse entities: {error}"


@pytest.mark.parametrize(("html", "text", "entities"), TDLIB_PARSED)
def test_parse_html_results_are_tdlibs(html: str, text: str, entities: list[Any]) -> None:
    """Text and entities (UTF-16 offsets, sorted as sort_entities does) as tdlib's own test expects."""
    assert parse_html(html) == (text, entities)


async def test_people_can_type_what_tdlib_would_refuse(app: Runtime, tg: StandIn) -> None:
    """The bot sends in HTML parse mode, so whatever a person typed must reach Telegram escaped: a project
    name with `<br>`, `a < b`, a comment and a bare `<span>` comes back as typed, and nothing fails."""
    admin = tg.user(ADMIN_ID, "Anna", token=TOKEN, language_code="en")
    await admin.send_command("newproject", "Org <br> <!-- x --> / Shop a < b <span>")
    reply = await admin.next_message()
    assert "Org <br> <!-- x -->" in reply["text"]
    assert "Shop a < b <span>" in reply["text"]


# -- finding 11: text wording and trimming -----------------------------------------------------------------
async def test_empty_and_whitespace_texts_have_telegrams_wording(tg: StandIn, raw_bot: Bot) -> None:
    """Client.cpp get_input_message_text: only "" is "message text is empty"; td fix_formatted_text: spaces,
    newlines, tabs (made spaces by clean_input_string) or invisible characters only are "text must be
    non-empty"."""
    user = tg.user(71, "Ann", token=TOKEN)
    with pytest.raises(TelegramBadRequest) as caught:
        await raw_bot.send_message(user.id, "")
    assert caught.value.message == "Bad Request: message text is empty"
    for blank in (" ", "\n\n", " \t\r\n", "\u200b\u00a0", "<b> </b>\n"):
        with pytest.raises(TelegramBadRequest) as caught:
            await raw_bot.send_message(user.id, blank, parse_mode="HTML")
        assert caught.value.message == "Bad Request: text must be non-empty", repr(blank)


async def test_telegram_trims_before_comparing_an_edit(tg: StandIn, raw_bot: Bot) -> None:
    """fix_formatted_text cuts trailing spaces and newlines (and leading ones before the first entity), so
    the stored text is the trimmed one and an edit that differs only there is "message is not modified"."""
    user = tg.user(72, "Ann", token=TOKEN)
    sent = await raw_bot.send_message(user.id, "\n  Score: <b>5</b>  \n\n", parse_mode="HTML")
    assert sent.text == "Score: 5"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await raw_bot.edit_message_text(
            "Score: <b>5</b>\n", chat_id=user.id, message_id=sent.message_id, parse_mode="HTML"
        )
    edited = await raw_bot.edit_message_text(
        "Score: <b>6</b>\n", chat_id=user.id, message_id=sent.message_id, parse_mode="HTML"
    )
    assert not isinstance(edited, bool) and edited.text == "Score: 6"


async def test_text_limit_counts_utf16_after_trimming(tg: StandIn, raw_bot: Bot) -> None:
    """4096 is counted in UTF-16 code units of the trimmed text: 2049 emoji are 4098 units (too long) while
    4096 letters and trailing newlines fit."""
    user = tg.user(73, "Ann", token=TOKEN)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await raw_bot.send_message(user.id, "🙂" * 2049)
    sent = await raw_bot.send_message(user.id, "x" * 4096 + "\n" * 10)
    assert sent.text == "x" * 4096


# -- finding 11: reply markup -----------------------------------------------------------------------------
def _button(n: int, text: str | None = None) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=f"b{n}" if text is None else text, callback_data=f"d{n}")


async def test_inline_keyboards_are_cut_to_telegrams_limits(tg: StandIn, raw_bot: Bot) -> None:
    """td ReplyMarkup.cpp get_reply_markup: a row keeps its first 12 buttons, a keyboard its first 300,
    buttons with an empty text are skipped and empty rows dropped, all without an error; a keyboard left with
    nothing is no keyboard."""
    user = tg.user(74, "Ann", token=TOKEN)
    wide = InlineKeyboardMarkup(inline_keyboard=[[_button(n) for n in range(14)]])
    sent = await raw_bot.send_message(user.id, "wide", reply_markup=wide)
    assert sent.reply_markup is not None
    assert [b.text for b in sent.reply_markup.inline_keyboard[0]] == [f"b{n}" for n in range(12)]

    tall = InlineKeyboardMarkup(inline_keyboard=[[_button(n)] for n in range(305)])
    sent = await raw_bot.send_message(user.id, "tall", reply_markup=tall)
    assert sent.reply_markup is not None and len(sent.reply_markup.inline_keyboard) == 300

    gaps = InlineKeyboardMarkup(inline_keyboard=[[_button(1, ""), _button(2)], [_button(3, "")]])
    sent = await raw_bot.send_message(user.id, "gaps", reply_markup=gaps)
    assert sent.reply_markup is not None
    assert [[b.text for b in row] for row in sent.reply_markup.inline_keyboard] == [["b2"]]

    empty = InlineKeyboardMarkup(inline_keyboard=[[_button(1, "")]])
    sent = await raw_bot.send_message(user.id, "none", reply_markup=empty)
    assert sent.reply_markup is None
    with pytest.raises(AssertionError, match="no button"):  # the 13th button never reached the person
        await user.press(tg.world.chats[user.id].messages[1], "b12")


async def test_inline_button_errors_are_client_cpp_s(tg: StandIn, raw_bot: Bot) -> None:
    """Client.cpp get_inline_keyboard_button: an empty callback_data is no action at all ("Text buttons are
    unallowed"), a button that is no object and one without a text have their own wording."""
    from aiogram.methods import SendMessage

    user = tg.user(75, "Ann", token=TOKEN)
    cases: list[tuple[Any, str]] = [
        ([[{"text": "x", "callback_data": ""}]], "Text buttons are unallowed in the inline keyboard"),
        ([["x"]], "InlineKeyboardButton must be an Object"),
        ([[{"callback_data": "d"}]], 'Can\'t find field "text"'),
    ]
    for rows, error in cases:
        with pytest.raises(TelegramBadRequest) as caught:
            await raw_bot(SendMessage(chat_id=user.id, text="x", reply_markup={"inline_keyboard": rows}))  # type: ignore[arg-type]
        assert caught.value.message == f"Bad Request: can't parse inline keyboard button: {error}"


# -- finding 11: who the bot may write to -----------------------------------------------------------------------
async def test_a_person_who_never_started_the_bot_cannot_be_written_to(tg: StandIn, raw_bot: Bot) -> None:
    """tdlib: 403 "Bot can't initiate conversation with a user", kept a 403 by Client.cpp
    fail_query_with_error; once the person writes, the bot may answer."""
    user = tg.user(76, "Ann", token=TOKEN)
    user.never_started()
    with pytest.raises(TelegramForbiddenError) as caught:
        await raw_bot.send_message(user.id, "hello")
    assert caught.value.message == "Forbidden: bot can't initiate conversation with a user"
    await user.send_text("/start")
    assert (await raw_bot.send_message(user.id, "hello")).text == "hello"


async def test_a_group_without_the_right_to_send(tg: StandIn, raw_bot: Bot) -> None:
    """tdlib can_send_message_content: 400 "Not enough rights to send text messages to the chat", and per
    kind for media."""
    group = tg.group(-760, "Managers", token=TOKEN)
    group.restrict_bot()
    with pytest.raises(TelegramBadRequest) as caught:
        await raw_bot.send_message(-760, "hello")
    assert caught.value.message == "Bad Request: not enough rights to send text messages to the chat"
    with pytest.raises(TelegramBadRequest) as caught:
        await raw_bot.send_document(-760, BufferedInputFile(b"x", "a.txt"))
    assert caught.value.message == "Bad Request: not enough rights to send documents to the chat"
    group.restrict_bot(can_send=True)
    assert (await raw_bot.send_message(-760, "hello")).text == "hello"


async def test_outbox_ends_refused_messages_failed_and_goes_on(
    tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], raw_bot: Bot
) -> None:
    """A refusal for one chat (a person who never started the bot, a group that took the bot's right to
    send) is that message's failure, recorded with Telegram's words; every other chat still gets its own."""
    from sqlalchemy import select

    from infra.messages import SendText
    from infra.outbox import enqueue
    from jobs.outbox import OutboxSender
    from models import OutboxMessage, OutboxStatus

    stranger = tg.user(77, "Never", token=TOKEN)
    stranger.never_started()
    tg.group(-770, "Managers", token=TOKEN).restrict_bot()
    friend = tg.user(78, "Friend", token=TOKEN)
    async with sessions() as session, session.begin():
        await enqueue(session, stranger.id, SendText(text="alert"))
        await enqueue(session, -770, SendText(text="alert"))
        await enqueue(session, friend.id, SendText(text="alert"))
    await OutboxSender(raw_bot, db).drain()
    async with sessions() as session:
        rows = {r.chat_id: r for r in await session.scalars(select(OutboxMessage))}
    assert rows[friend.id].status == OutboxStatus.SENT
    assert [m["text"] for m in friend.bot_messages()] == ["alert"]
    assert rows[stranger.id].status == OutboxStatus.FAILED
    assert "bot can't initiate conversation with a user" in (rows[stranger.id].last_error or "")
    assert rows[-770].status == OutboxStatus.FAILED
    assert "not enough rights to send text messages" in (rows[-770].last_error or "")
