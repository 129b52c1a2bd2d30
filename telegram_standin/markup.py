"""Validation of message text, HTML entities and reply markup, with Telegram's own error texts."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

from telegram_standin.state import ApiError

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200  # answerCallbackQuery text, characters
ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
    "br",
}


# tdlib MessageEntity.cpp parse_html: synonyms give one entity type.
_ENTITY_OF = {"strong": "b", "em": "i", "ins": "u", "strike": "s", "del": "s", "tg-spoiler": "span"}


_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}  # the only named entities tdlib decodes


class _EntityParser(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.stack: list[tuple[str, int, str]] = []  # (tag, offset where it opened, its href if any)
        self.text: list[str] = []
        self.entities: list[tuple[str, int, int, str]] = []  # (type, offset, length, url)
        self.length = 0

    def _byte_offset(self) -> int:
        """Where the current tag starts, in UTF-8 bytes, as tdlib's error messages count it."""
        line, column = self.getpos()
        lines = self.source.splitlines(keepends=True)
        before = "".join(lines[: line - 1]) + (lines[line - 1][:column] if lines else "")
        return len(before.encode("utf-8"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            raise ApiError(
                400,
                f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}" at byte offset '
                f"{self._byte_offset()}",
            )
        if tag != "br":
            self.stack.append((tag, self.length, dict(attrs).get("href") or ""))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            raise ApiError(
                400,
                f"Bad Request: can't parse entities: Unexpected end tag at byte offset {self._byte_offset()}",
            )
        if self.stack[-1][0] != tag:
            raise ApiError(
                400,
                f"Bad Request: can't parse entities: Unmatched end tag at byte offset {self._byte_offset()}, "
                f'expected "</{self.stack[-1][0]}>", found "</{tag}>"',
            )
        _tag, start, url = self.stack.pop()
        if self.length > start:  # an empty entity is dropped, as tdlib does
            self.entities.append((_ENTITY_OF.get(tag, tag), start, self.length - start, url))

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        self.length += len(data)

    def handle_entityref(self, name: str) -> None:
        self.handle_data(_NAMED.get(name, f"&{name};"))  # &laquo; stays as it is written

    def handle_charref(self, name: str) -> None:
        try:
            code = int(name[1:], 16) if name[:1] in ("x", "X") else int(name)
            char = chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else None
        except ValueError:
            char = None
        self.handle_data(char if char is not None else f"&#{name};")


def parse_entities(text: str, parse_mode: str | None) -> tuple[str, list[tuple[str, int, int, str]]]:
    """What the user sees, and its formatting: the text with its markup parsed away (errors as Telegram
    reports them, after tdlib MessageEntity.cpp parse_html), and the entities as (type, offset, length,
    url)."""
    if not parse_mode or parse_mode.upper() != "HTML":
        return text, []  # Markdown modes are not used by the product; accept them as plain text.
    parser = _EntityParser(text)
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise ApiError(
            400,
            f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            f'"{parser.stack[-1][0]}"',
        )
    return "".join(parser.text), sorted(parser.entities, key=lambda e: (e[1], -e[2], e[0]))


def plain_text(text: str, parse_mode: str | None) -> str:
    return parse_entities(text, parse_mode)[0]


def check_text(text: str | None, parse_mode: str | None, *, caption: bool = False) -> str:
    if not caption and not (text or "").strip():
        raise ApiError(400, "Bad Request: message text is empty")
    visible = plain_text(text or "", parse_mode)
    limit = MAX_CAPTION if caption else MAX_TEXT
    if len(visible) > limit:
        raise ApiError(
            400, "Bad Request: message caption is too long" if caption else "Bad Request: message is too long"
        )
    if not caption and not visible.strip():
        raise ApiError(400, "Bad Request: text must be non-empty")
    return visible


def parse_markup(raw: Any) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            markup = json.loads(raw)
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object") from None
    else:
        markup = raw
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise ApiError(
                400, 'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array'
            )
        for row in rows:
            for button in row:
                _check_inline_button(button)
    elif "keyboard" in markup:
        for row in markup["keyboard"]:
            for button in row:
                if isinstance(button, dict) and not button.get("text"):
                    raise ApiError(
                        400, 'Bad Request: can\'t parse keyboard button: Field "text" must be of type String'
                    )
    elif not ({"remove_keyboard", "force_reply"} & markup.keys()):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    return markup


def _check_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str) or not button["text"]:
        raise ApiError(400, "Bad Request: can't parse inline keyboard button: Text must be non-empty")
    actions = {"callback_data", "url", "switch_inline_query", "web_app", "login_url", "pay", "copy_text"}
    if not actions & button.keys():
        raise ApiError(
            400,
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
        )
    data = button.get("callback_data")
    if data is not None and (not data or len(str(data).encode()) > MAX_CALLBACK_DATA):
        raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
