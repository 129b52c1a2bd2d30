"""Every message the bot can queue in the outbox, one small model each (no aiogram here: the sender,
jobs/outbox.py, renders each kind to its one Bot API call). Stored as JSON in `outbox_message.payload`
with its `kind`; `outbox_message.method` keeps the Bot API method for operators reading the table.

Keyboards are plain data: the Bot API's InlineKeyboardMarkup as a dict (`reply_markup`), which the
sender validates into aiogram's model when it sends.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Markup = dict[str, Any]  # an InlineKeyboardMarkup as the Bot API's JSON


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SendText(_Message):
    """sendMessage. `anchor` ("kind:key", infra.outbox.MessageAnchor): the message's Telegram id is kept
    there once sent, for later edits. `buttons_after_send`: sent bare, then its buttons edited onto the copy
    whose id came back (default: anchored messages are), so a copy whose answer was lost has no live buttons."""

    kind: Literal["text"] = "text"
    text: str
    reply_markup: Markup | None = None
    anchor: str | None = None
    buttons_after_send: bool | None = None

    @property
    def arms_buttons(self) -> bool:
        if not self.reply_markup:
            return False
        if self.buttons_after_send is not None:
            return self.buttons_after_send
        return self.anchor is not None


class SendVoice(_Message):
    """sendVoice of a stored recording: by Telegram file id, or uploaded from the store (`audio_key`) when
    there is none; sent as a file captioned `file_caption` to someone who refuses voice notes."""

    kind: Literal["voice"] = "voice"
    voice: str | None = None  # Telegram file id
    audio_key: str | None = None  # infra.storage key
    caption: str | None = None
    file_caption: str | None = None


class SendSurveyCode(_Message):
    """sendPhoto of a survey's QR code, drawn when sent (a small PNG, not worth storing)."""

    kind: Literal["survey_code"] = "survey_code"
    link: str
    caption: str | None = None


class SendChart(_Message):
    """sendPhoto of a PNG kept in the blob store (infra.storage), so any machine's sender can send it.
    `path` is only in rows queued before charts went to the store (a file on the machine that drew it)."""

    kind: Literal["chart"] = "chart"
    blob_key: str | None = None
    path: str | None = None
    caption: str | None = None


class EditText(_Message):
    """editMessageText of a message sent earlier, found by (first that is set) its Telegram `message_id`,
    its `anchor`, or `edit_of`: the dedupe key of the outbox message that sent it. An edit without a
    `reply_markup` takes the buttons away."""

    kind: Literal["edit_text"] = "edit_text"
    text: str
    reply_markup: Markup | None = None
    message_id: int | None = None
    anchor: str | None = None
    edit_of: str | None = None


OutboxMessageBody = Annotated[
    SendText | SendVoice | SendSurveyCode | SendChart | EditText, Field(discriminator="kind")
]
METHODS: dict[str, str] = {
    "text": "sendMessage",
    "voice": "sendVoice",
    "survey_code": "sendPhoto",
    "chart": "sendPhoto",
    "edit_text": "editMessageText",
}
_BODY: TypeAdapter[OutboxMessageBody] = TypeAdapter(OutboxMessageBody)


def method_of(message: OutboxMessageBody) -> str:
    """The Bot API method a message is sent with (stored beside it)."""
    return METHODS[message.kind]


def dump(message: OutboxMessageBody) -> dict[str, Any]:
    """The JSON stored in the outbox row."""
    return message.model_dump(mode="json", exclude_none=True)


def parse_stored(method: str, payload: dict[str, Any]) -> OutboxMessageBody:
    """The message of a stored outbox row. Rows queued before messages were typed (no `kind`: a method and
    a free payload dict) may still be waiting in a database when this version starts, so they are read too:
    `card_of_assignment` was the anchor of review cards, a chart was a machine-local `path`, a survey code
    was `qr`. Anything else fails validation, and the sender ends that row `failed` with the error."""
    if "kind" in payload:
        return _BODY.validate_python(payload)
    legacy = dict(payload)
    card = legacy.pop("card_of_assignment", None)
    if card is not None and not legacy.get("anchor"):
        legacy["anchor"] = f"card:{card}"
    if method == "sendMessage":
        return SendText.model_validate(legacy)
    if method == "sendVoice":
        return SendVoice.model_validate(legacy)
    if method == "editMessageText":
        return EditText.model_validate(legacy)
    if method == "sendPhoto" and "qr" in legacy:
        return SendSurveyCode(link=str(legacy["qr"]), caption=legacy.get("caption"))
    if method == "sendPhoto":
        return SendChart.model_validate(legacy)
    raise ValueError(f"unsupported outbox method {method}")


def anchor_of(message: OutboxMessageBody) -> tuple[str, str] | None:
    """(kind, key) of a message's anchor, if it has one."""
    anchor = message.anchor if isinstance(message, SendText | EditText) else None
    if not anchor:
        return None
    kind, _, key = anchor.partition(":")
    return kind, key
