"""Validation of message text, HTML entities and reply markup, with Telegram's own error texts.

Everything here follows the real server's source, read for this purpose:
- tdlib/td `td/telegram/MessageEntity.cpp`: `parse_html` (and its `decode_html_entity`), the HTML parse mode
  byte for byte: which tags exist, how attributes are read, which character references are decoded, and the
  error texts; `fix_formatted_text`, which cleans and trims the parsed text and refuses one left empty.
- tdlib/td `td/telegram/misc.cpp`: `clean_input_string` and `strip_empty_characters` / `is_empty_string`.
- tdlib/td `td/telegram/ReplyMarkup.cpp`: `get_reply_markup`, which drops buttons with an empty text and keeps
  at most 12 buttons in a row and 300 in a keyboard, silently.
- tdlib/telegram-bot-api `telegram-bot-api/Client.cpp`: `get_input_message_text` ("Message text is empty" for
  an empty text only), `get_formatted_text`, `get_reply_markup`, `get_inline_keyboard_button`,
  `get_keyboard_button`, and `fail_query_with_error`, which prefixes "Bad Request: " and lowercases the first
  letter of td's message ("Can't parse entities: ..." reaches the bot as "Bad Request: can't parse
  entities: ...").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from telegram_standin.state import ApiError

MAX_TEXT = 4096  # UTF-16 code units after entities are parsed and the text is trimmed
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200  # answerCallbackQuery text, characters
MAX_RAW_TEXT_BYTES = 1 << 15  # Client.cpp get_formatted_text: "Text is too long"
# td ReplyMarkup.cpp get_reply_markup: buttons past these are dropped without an error.
MAX_ROW_BUTTONS = 12
MAX_KEYBOARD_BUTTONS = 300

Entity = tuple[str, int, int, str]  # (Bot API type, UTF-16 offset, UTF-16 length, url or argument)

# MessageEntity.cpp parse_html: the only tags there are (no <br>, <p>, <div>, comments or doctype).
ALLOWED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_ENTITY_TYPE = {
    "i": "italic",
    "em": "italic",
    "b": "bold",
    "strong": "bold",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
# MessageEntity::get_type_priority, the tie-breaker of sort_entities (offset, then longer first, then this).
_PRIORITY = {
    "bold": 90,
    "italic": 91,
    "code": 20,
    "pre": 11,
    "text_link": 49,
    "text_mention": 49,
    "underline": 92,
    "strikethrough": 93,
    "blockquote": 0,
    "expandable_blockquote": 0,
    "spoiler": 94,
    "custom_emoji": 99,
}
_NAMED = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}  # decode_html_entity: these four only


def _parse_error(message: str) -> ApiError:
    # Td::parseTextEntities: "Can't parse entities: " + parse_html's error; Client.cpp lowercases the "C".
    return ApiError(400, f"Bad Request: can't parse entities: {message}")


def _is_space(c: int) -> bool:  # tdutils misc.h is_space: ' ', \t, \r, \n, \0, \v
    return c in (0x20, 0x09, 0x0D, 0x0A, 0x00, 0x0B)


def _is_alpha(c: int) -> bool:
    return 0x61 <= (c | 0x20) <= 0x7A


def _is_digit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def _is_hex(c: int) -> bool:
    return _is_digit(c) or 0x61 <= (c | 0x20) <= 0x66


def _lower(raw: bytes) -> str:  # td::to_lower: ASCII letters only
    return raw.decode("utf-8", "surrogateescape").translate(str.maketrans(_UPPER, _UPPER.lower()))


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _Bytes:
    """The text as tdlib sees it: UTF-8 bytes with a NUL after the end (reads past it give 0)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __getitem__(self, i: int) -> int:
        return self.data[i] if i < len(self.data) else 0


def _decode_html_entity(text: _Bytes, pos: int) -> tuple[int, int]:
    """MessageEntity.cpp decode_html_entity: (code point, position after it), or (0, pos) if none."""
    end = pos + 1
    res = 0
    if text[pos + 1] == 0x23:  # '#'
        end += 1
        if text[pos + 2] == 0x78:  # 'x', lowercase only
            end += 1
            while _is_hex(text[end]):
                res = res * 16 + int(chr(text[end]), 16)
                end += 1
        else:
            while _is_digit(text[end]):
                res = res * 10 + text[end] - 0x30
                end += 1
        if res == 0 or res >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while _is_alpha(text[end]):
            end += 1
        res = _NAMED.get(text.data[pos + 1 : end], 0)
        if res == 0:
            return 0, pos  # &laquo; and friends stay as written
    return res, end + 1 if text[end] == 0x3B else end


def _utf8(code: int) -> bytes:
    return chr(code).encode("utf-8", "surrogatepass")


def parse_html(source: str) -> tuple[str, list[Entity]]:  # noqa: PLR0915 -- tdlib's one function, kept whole
    """tdlib/td MessageEntity.cpp `parse_html`, ported statement by statement: the text with the markup
    parsed away, and its entities with UTF-16 offsets. Anything else is refused with tdlib's error, e.g. a
    `<` followed by a space, a digit or `=` ("Unsupported start tag "" / "3" / "=..."), `<br>`, comments
    (`<!--`), a `<span>` without class tg-spoiler, an unclosed or unmatched tag."""
    text = _Bytes(source.encode("utf-8", "surrogatepass"))
    size = len(text.data)
    result = bytearray()
    entities: list[Entity] = []
    utf16_offset = 0
    need_recheck_utf8 = False
    nested: list[tuple[str, str, int, int]] = []  # (tag, argument, UTF-16 offset, byte offset in result)
    i = 0
    while i < size:
        c = text[i]
        if c == 0x26:  # '&'
            code, after = _decode_html_entity(text, i)
            if code != 0:
                i = after
                utf16_offset += 1 + (code > 0xFFFF)
                need_recheck_utf8 |= 0xD800 <= code <= 0xDFFF
                result += _utf8(code)
                continue
        if c != 0x3C:  # '<'
            if c & 0xC0 != 0x80:
                utf16_offset += 1 + (c >= 0xF0)
            result.append(c)
            i += 1
            continue

        begin_pos = i
        i += 1
        if text[i] != 0x2F:  # a start tag
            while not _is_space(text[i]) and text[i] != 0x3E:
                i += 1
            if text[i] == 0:
                raise _parse_error(f"Unclosed start tag at byte offset {begin_pos}")
            tag = _lower(text.data[begin_pos + 1 : i])
            if tag not in ALLOWED_TAGS:
                raise _parse_error(f'Unsupported start tag "{tag}" at byte offset {begin_pos}')
            argument = ""
            while text[i] != 0x3E:
                while text[i] != 0 and _is_space(text[i]):
                    i += 1
                if text[i] == 0x3E:
                    break
                name_begin = i
                while not _is_space(text[i]) and text[i] not in (0x3D, 0x3E, 0x2F, 0x22, 0x27):
                    i += 1
                name = text.data[name_begin:i]
                if not name:
                    raise _parse_error(f'Empty attribute name in the tag "{tag}" at byte offset {begin_pos}')
                while text[i] != 0 and _is_space(text[i]):
                    i += 1
                if text[i] != 0x3D:  # an attribute without a value
                    if text[i] == 0:
                        raise _parse_error(f'Unclosed start tag "{tag}" at byte offset {begin_pos}')
                    if tag == "blockquote" and name == b"expandable":
                        argument = "1"
                    continue
                i += 1
                while text[i] != 0 and _is_space(text[i]):
                    i += 1
                if text[i] == 0:
                    raise _parse_error(f'Unclosed start tag "{tag}" at byte offset {begin_pos}')
                if text[i] not in (0x27, 0x22):  # a name token
                    token_begin = i
                    while _is_alpha(text[i]) or _is_digit(text[i]) or text[i] in (0x2E, 0x2D):
                        i += 1
                    value = _lower(text.data[token_begin:i])
                    if not _is_space(text[i]) and text[i] != 0x3E:
                        raise _parse_error(f"Unexpected end of name token at byte offset {token_begin}")
                else:  # a string literal, with character references decoded
                    end_character = text[i]
                    i += 1
                    raw = bytearray()
                    while text[i] != end_character and text[i] != 0:
                        if text[i] == 0x26:
                            code, after = _decode_html_entity(text, i)
                            if code != 0:
                                raw += _utf8(code)
                                i = after
                                continue
                        raw.append(text[i])
                        i += 1
                    if text[i] == end_character:
                        i += 1
                    value = raw.decode("utf-8", "surrogateescape")
                if text[i] == 0:
                    raise _parse_error(f"Unclosed start tag at byte offset {begin_pos}")
                if tag == "a" and name == b"href":
                    argument = value
                elif tag == "code" and name == b"class" and value.startswith("language-"):
                    argument = value[9:]
                elif tag == "span" and name == b"class" and value.startswith("tg-"):
                    argument = value[3:]
                elif tag == "tg-emoji" and name == b"emoji-id":
                    argument = value
                elif tag == "blockquote" and name == b"expandable":
                    argument = "1"
            if tag == "span" and argument != "spoiler":
                raise _parse_error(f'Tag "span" must have class "tg-spoiler" at byte offset {begin_pos}')
            nested.append((tag, argument, utf16_offset, len(result)))
        else:  # an end tag
            if not nested:
                raise _parse_error(f"Unexpected end tag at byte offset {begin_pos}")
            while not _is_space(text[i]) and text[i] != 0x3E:
                i += 1
            end_tag = _lower(text.data[begin_pos + 2 : i])
            while _is_space(text[i]) and text[i] != 0:
                i += 1
            if text[i] != 0x3E:
                raise _parse_error(f"Unclosed end tag at byte offset {begin_pos}")
            tag, argument, entity_offset, entity_begin = nested[-1]
            if end_tag and end_tag != tag:
                raise _parse_error(
                    f'Unmatched end tag at byte offset {begin_pos}, expected "</{tag}>", found "</{end_tag}>"'
                )
            if utf16_offset > entity_offset:
                length = utf16_offset - entity_offset
                inner = bytes(result[entity_begin:]).decode("utf-8", "surrogateescape")
                _close_entity(entities, tag, argument, (entity_offset, length), inner)
            nested.pop()
        i += 1  # past the '>'
    if nested:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{nested[-1][0]}"')
    if need_recheck_utf8:  # check_utf8 refuses any surrogate code point, paired or not
        raise _parse_error(
            "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched "
            "surrogate code units"
        )
    entities = [(t, o, n, "" if t == "code" else a) for t, o, n, a in entities]
    return bytes(result).decode("utf-8"), _sorted(entities)


def _close_entity(entities: list[Entity], tag: str, argument: str, span: tuple[int, int], inner: str) -> None:
    offset, length = span
    if tag in _ENTITY_TYPE:
        entities.append((_ENTITY_TYPE[tag], offset, length, ""))
    elif tag == "tg-emoji":
        if not re.fullmatch(r"-?[1-9]\d{0,18}", argument) or not -(2**63) <= int(argument) < 2**63:
            raise _parse_error("Invalid custom emoji identifier specified")
        entities.append(("custom_emoji", offset, length, argument))
    elif tag == "a":
        url = argument or inner
        user = re.fullmatch(r"tg://user\?id=(\d{1,18})", url, flags=re.IGNORECASE)
        if user:
            entities.append(("text_mention", offset, length, user.group(1)))
        elif checked := _checked_link(url):
            entities.append(("text_link", offset, length, checked))
    elif tag == "pre":
        last = entities[-1] if entities else None
        if last and last[0] == "code" and last[1:3] == (offset, length) and last[3]:
            entities[-1] = ("pre", offset, length, last[3])  # <pre><code class="language-x">: PreCode
        else:
            entities.append(("pre", offset, length, ""))
    elif tag == "code":
        last = entities[-1] if entities else None
        if last and last[0] == "pre" and last[1:3] == (offset, length) and argument:
            entities[-1] = ("pre", offset, length, argument)
        else:
            entities.append(("code", offset, length, argument))
    elif tag == "blockquote":
        entities.append(("expandable_blockquote" if argument else "blockquote", offset, length, ""))


def _checked_link(url: str) -> str:
    """LinkManager::get_checked_link, approximately: http(s), tg and ton links are kept, a bare host gets
    "http://"; anything else gives no entity (the text stays, unlinked)."""
    if re.match(r"(?i)(tg|ton)://\S+$", url):
        return url
    if not re.match(r"(?i)https?://", url):
        url = "http://" + url
    link = re.match(r"(?i)(https?://[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::\d+)?)([/?#]\S*)?$", url)
    if link is None:
        return ""
    rest = link.group(2) or ""
    return link.group(1) + (rest if rest.startswith("/") else "/" + rest)


def _sorted(entities: list[Entity]) -> list[Entity]:
    return sorted(entities, key=lambda e: (e[1], -e[2], _PRIORITY.get(e[0], 50)))


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_REMOVED = {0x2028, 0x2029, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x0333, 0x033F, 0x030A}
_SPACES = {0x1680, 0x180E, *range(0x2000, 0x200B), 0x202E, 0x202F, 0x205F, 0x2800, 0x3000, 0xFFFC}
_EMPTY = {0x20, 0x0A, *range(0x200B, 0x2010), 0x202E, 0xFEFF, 0xA0}


def _is_empty_string(text: str) -> bool:
    """misc.cpp is_empty_string (strip_empty_characters): nothing but spaces, newlines and invisible
    characters (zero-width spaces and joiners, direction marks, BOM, no-break space, Braille blank...)."""
    for ch in text:
        code = ord(ch)
        if code in _EMPTY or code in _SPACES or 0xE0000 <= code <= 0xE007F or _is_space(code):
            continue
        return False
    return True


def fix_formatted_text(text: str, entities: list[Entity], *, allow_empty: bool) -> tuple[str, list[Entity]]:
    """MessageEntity.cpp `fix_formatted_text` (with misc.cpp `clean_input_string`): control characters
    become spaces, \\r and some invisible marks are removed, trailing spaces and newlines are cut, leading ones
    too up to the first entity; a text left empty is "Text must be non-empty" (captions may be empty). The
    text Telegram stores, and compares for "message is not modified", is this one."""
    # Work in code points; entities come and go in UTF-16 units.
    units = [0]
    for ch in text:
        units.append(units[-1] + (2 if ord(ch) > 0xFFFF else 1))
    at_unit = {u: index for index, u in enumerate(units)}
    spans = [(t, at_unit[o], at_unit[o + n], a) for t, o, n, a in entities]
    kept: list[str] = []
    new_index = [0] * (len(text) + 1)
    for index, ch in enumerate(text):
        new_index[index] = len(kept)
        code = ord(ch)
        if code == 0x0D or code in _REMOVED:
            continue
        kept.append(" " if code < 0x20 and code != 0x0A else ch)
    new_index[len(text)] = len(kept)
    spans = [(t, new_index[b], new_index[e], a) for t, b, e, a in spans if new_index[e] > new_index[b]]
    last = max((k for k, ch in enumerate(kept) if ch not in " \n"), default=-1)
    if last == -1:
        if allow_empty:
            return "", []
        raise ApiError(400, "Bad Request: text must be non-empty")
    kept = kept[: last + 1]
    spans = [(t, b, min(e, last + 1), a) for t, b, e, a in spans if b <= last]
    first_entity = min((b for _t, b, _e, _a in spans), default=len(kept))
    skip = 0
    while skip < first_entity and kept[skip] in " \n":
        skip += 1
    cleaned = "".join(kept[skip:])
    if not allow_empty and _is_empty_string(cleaned):
        raise ApiError(400, "Bad Request: text must be non-empty")
    out_units = [0]
    for ch in cleaned:
        out_units.append(out_units[-1] + (2 if ord(ch) > 0xFFFF else 1))
    fixed = [
        (t, out_units[b - skip], out_units[e - skip] - out_units[b - skip], a)
        for t, b, e, a in spans
        if e > b
    ]
    return cleaned, _sorted(fixed)


def parse_entities(text: str, parse_mode: str | None) -> tuple[str, list[Entity]]:
    """What the user sees, and its formatting: the text with its markup parsed away (tdlib MessageEntity.cpp
    parse_html, errors as Telegram reports them), and the entities as (type, UTF-16 offset, length, url)."""
    mode = (parse_mode or "").lower()
    if not text or mode in ("", "none"):
        return text, []
    if mode != "html":
        return text, []  # Markdown modes are not used by the product; accept them as plain text.
    return parse_html(text)


def formatted_text(
    text: str | None, parse_mode: str | None, *, caption: bool = False
) -> tuple[str, list[Entity]]:
    """A message text or caption as Telegram stores it, or Telegram's refusal: Client.cpp
    get_input_message_text says "message text is empty" only for an empty text; a text of spaces or markup
    around nothing is td's "text must be non-empty" (fix_formatted_text); the limits count UTF-16 code
    units of the trimmed text."""
    raw = text or ""
    if not caption and not raw:
        raise ApiError(400, "Bad Request: message text is empty")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_RAW_TEXT_BYTES:
        raise ApiError(400, "Bad Request: text is too long")
    visible, entities = fix_formatted_text(*parse_entities(raw, parse_mode), allow_empty=caption)
    if _utf16_len(visible) > (MAX_CAPTION if caption else MAX_TEXT):
        raise ApiError(
            400, "Bad Request: message caption is too long" if caption else "Bad Request: message is too long"
        )
    return visible, entities


def plain_text(text: str, parse_mode: str | None) -> str:
    return parse_entities(text, parse_mode)[0]


def check_text(text: str | None, parse_mode: str | None, *, caption: bool = False) -> str:
    return formatted_text(text, parse_mode, caption=caption)[0]


# -- reply markup -----------------------------------------------------------------------------------
def _bad(message: str) -> ApiError:
    """Client.cpp fail_query_with_error: "Bad Request: " and the first letter lowercased."""
    return ApiError(400, "Bad Request: " + message[:1].lower() + message[1:])


def _string_field(obj: dict[str, Any], name: str, *, required: bool) -> str | None:
    """tdutils JsonObject::get_required_string_field / get_optional_string_field (numbers pass as strings)."""
    if name not in obj or (obj[name] is None and not required):
        if required:
            raise ValueError(f'Can\'t find field "{name}"')
        return None
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f'Field "{name}" must be of type String')
    return value if isinstance(value, str) else json.dumps(value)


def _inline_button(button: Any) -> dict[str, Any]:
    """Client.cpp get_inline_keyboard_button: the first non-empty action wins; an empty callback_data counts
    as none. Errors are raised as ValueError with Client.cpp's text."""
    if not isinstance(button, dict):
        raise ValueError("InlineKeyboardButton must be an Object")
    _string_field(button, "text", required=True)
    if _string_field(button, "url", required=False):
        return button
    if _string_field(button, "callback_data", required=False):
        return button
    for action in (
        "callback_game",
        "pay",
        "switch_inline_query",
        "switch_inline_query_chosen_chat",
        "switch_inline_query_current_chat",
        "login_url",
        "web_app",
        "copy_text",
    ):
        if action in button:
            return button
    raise ValueError("Text buttons are unallowed in the inline keyboard")


def _keyboard_button(button: Any) -> dict[str, Any]:
    """Client.cpp get_keyboard_button: a String or an Object with a "text"."""
    if isinstance(button, str):
        return {"text": button}
    if isinstance(button, dict):
        _string_field(button, "text", required=True)
        return button
    raise ValueError("KeyboardButton must be a String or an Object")


def _rows(markup: dict[str, Any], field: str) -> list[list[Any]] | None:
    rows = markup.get(field)
    if rows is None:
        return None
    if not isinstance(rows, list):
        raise _bad(f'Field "{field}" must be of type Array')
    if not all(isinstance(row, list) for row in rows):
        raise _bad(
            f'Field "{field}" of the InlineKeyboardMarkup must be an Array of Arrays'
            if field == "inline_keyboard"
            else f'Field "{field}" must be an Array of Arrays'
        )
    return rows


def _parsed_rows(
    markup: dict[str, Any], field: str, parse: Callable[[Any], dict[str, Any]], what: str
) -> list[list[dict[str, Any]]]:
    """A keyboard's rows, each button parsed; a bad button fails the whole markup, as Client.cpp does."""
    parsed: list[list[dict[str, Any]]] = []
    for row in _rows(markup, field) or []:
        try:
            parsed.append([parse(button) for button in row])
        except ValueError as exc:
            raise _bad(f"Can't parse {what}: {exc}") from None
    return parsed


def _truncate(rows: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """td ReplyMarkup.cpp get_reply_markup: a button with an empty text is skipped, a row keeps its first 12
    buttons, the keyboard its first 300; rows left empty are dropped. No error: the rest simply never
    reaches the person."""
    kept: list[list[dict[str, Any]]] = []
    total = 0
    for row in rows:
        new_row: list[dict[str, Any]] = []
        for button in row:
            if str(button.get("text", "")) == "":
                continue
            new_row.append(button)
            total += 1
            if len(new_row) >= MAX_ROW_BUTTONS or total >= MAX_KEYBOARD_BUTTONS:
                break
        if new_row:
            kept.append(new_row)
        if total >= MAX_KEYBOARD_BUTTONS:
            break
    return kept


def parse_markup(raw: Any) -> dict[str, Any] | None:
    """reply_markup as Telegram keeps it (Client.cpp get_reply_markup, then td ReplyMarkup.cpp
    get_reply_markup): None when there is none or when nothing of it is left."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            markup = json.loads(raw)
        except ValueError:
            raise _bad("Can't parse reply keyboard markup JSON object") from None
    else:
        markup = raw
    if not isinstance(markup, dict):
        raise _bad("Object expected as reply markup")
    parsed_keyboard = _parsed_rows(markup, "keyboard", _keyboard_button, "keyboard button")
    parsed_inline = _parsed_rows(markup, "inline_keyboard", _inline_button, "inline keyboard button")
    if parsed_keyboard:
        rows = _truncate(parsed_keyboard)
        return (
            {**{k: v for k, v in markup.items() if k != "inline_keyboard"}, "keyboard": rows}
            if rows
            else None
        )
    if parsed_inline:
        rows = _truncate(parsed_inline)
        for row in rows:
            for button in row:
                data = button.get("callback_data")
                if data and len(str(data).encode()) > MAX_CALLBACK_DATA:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")  # the server's answer, as is
        return {"inline_keyboard": rows} if rows else None
    if markup.get("remove_keyboard") or markup.get("hide_keyboard"):
        return {"remove_keyboard": True}
    if markup.get("force_reply") or markup.get("force_reply_keyboard"):
        return {
            k: v for k, v in markup.items() if k in ("force_reply", "input_field_placeholder", "selective")
        }
    return None
