"""Every Telegram message the bot queues, in one place: which message (infra/messages.py), to whom, under
which dedupe key (services/outbox_keys.py), with which delivery rule. Callers decide and render (texts,
keyboards, in the recipient's language); these functions only write the outbox rows, in the caller's
transaction (infra/outbox.py), and the sender (jobs/outbox.py) delivers them."""

from __future__ import annotations

import datetime as dt

from aiogram.types import InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession

from infra import outbox
from infra.messages import EditText, Markup, SendChart, SendSurveyCode, SendText, SendVoice
from infra.outbox import enqueue
from services import outbox_keys as keys
from services.review import card_anchor


def _markup(keyboard: InlineKeyboardMarkup | None) -> Markup | None:
    return keyboard.model_dump(exclude_none=True) if keyboard is not None else None


# The promoter


async def queue_receipt(session: AsyncSession, chat_id: int, contact_id: int, text: str) -> bool:
    """The receipt of a new contact. No keyboard: Telegram never lets a message that carries a reply
    keyboard be edited, and the receipt is edited as the contact moves on (queue_receipt_update)."""
    return await enqueue(session, chat_id, SendText(text=text), dedupe_key=keys.receipt(contact_id))


async def queue_receipt_update(
    session: AsyncSession, chat_id: int, contact_id: int, text: str, message_id: int | None
) -> bool:
    """The receipt edited to the contact's new status: by its Telegram id where the contact kept one (older
    contacts), else found through the receipt's outbox message."""
    edit = EditText(
        text=text, message_id=message_id, edit_of=None if message_id else keys.receipt(contact_id)
    )
    return await enqueue(session, chat_id, edit)


async def queue_survey_code(
    session: AsyncSession, chat_id: int, contact_id: int, link: str, caption: str
) -> bool:
    """The customer survey's QR code under the receipt (drawn when sent)."""
    return await enqueue(
        session, chat_id, SendSurveyCode(link=link, caption=caption), dedupe_key=keys.survey_code(contact_id)
    )


async def queue_feedback(
    session: AsyncSession,
    chat_id: int,
    review_id: int,
    text: str,
    keyboard: InlineKeyboardMarkup | None,
    *,
    not_before: dt.datetime,
) -> bool:
    """A reviewer's verdict for the promoter, held until the undo window has passed (an undo cancels it by
    its key: services.review.undo_review)."""
    return await enqueue(
        session,
        chat_id,
        SendText(text=text, reply_markup=_markup(keyboard)),
        dedupe_key=keys.feedback(review_id),
        not_before=not_before,
    )


async def queue_automatic_feedback(
    session: AsyncSession, chat_id: int, contact_id: int, text: str, keyboard: InlineKeyboardMarkup
) -> bool:
    """An automatic verdict, at once (no reviewer can take it back)."""
    return await enqueue(
        session,
        chat_id,
        SendText(text=text, reply_markup=_markup(keyboard)),
        dedupe_key=keys.automatic_feedback(contact_id),
    )


# Reviewers


async def queue_card(
    session: AsyncSession,
    chat_id: int,
    assignment_id: int,
    *,
    voice: SendVoice | None,
    form_parts: list[str],
    text: str,
    keyboard: InlineKeyboardMarkup,
) -> None:
    """A review card: the recording, the whole form first when the card shortens it, then the card, which is
    anchored on its assignment (later edits find it there) and so armed after send (one live copy)."""
    if voice is not None:
        await enqueue(session, chat_id, voice, dedupe_key=keys.card_voice(assignment_id))
    for index, part in enumerate(form_parts):
        await enqueue(session, chat_id, SendText(text=part), dedupe_key=keys.card_form(assignment_id, index))
    card = SendText(text=text, reply_markup=_markup(keyboard), anchor=card_anchor(assignment_id))
    await enqueue(session, chat_id, card, dedupe_key=keys.card(assignment_id))


async def queue_card_closed(
    session: AsyncSession, chat_id: int, assignment_id: int, reason: str, text: str
) -> bool:
    """The card edited to say why it closed; no reply_markup, so its buttons go."""
    edit = EditText(text=text, anchor=card_anchor(assignment_id))
    return await enqueue(session, chat_id, edit, dedupe_key=keys.card_closed(reason, assignment_id))


async def queue_offer(
    session: AsyncSession, chat_id: int, assignment_id: int, text: str, keyboard: InlineKeyboardMarkup
) -> bool:
    """A contact offered to the reviewers' group (Take is re-checked on press: at-least-once is harmless)."""
    message = SendText(text=text, reply_markup=_markup(keyboard))
    return await enqueue(session, chat_id, message, dedupe_key=keys.offer(assignment_id))


# Managers


async def queue_alert_copy(
    session: AsyncSession,
    chat_id: int,
    alert_id: int,
    text: str,
    keyboard: InlineKeyboardMarkup,
    *,
    repeat: bool = False,
) -> bool:
    """One managers' chat's copy of an alert (buttons re-checked on press)."""
    message = SendText(text=text, reply_markup=_markup(keyboard))
    return await enqueue(
        session, chat_id, message, dedupe_key=keys.alert_copy(alert_id, chat_id, repeat=repeat)
    )


async def live_alert_copies(session: AsyncSession, alert_id: int) -> list[tuple[int, str]]:
    """(chat id, dedupe key) of every copy of an alert queued and not withdrawn, first and repeated."""
    return await outbox.live_copies(session, *keys.alert_copies(alert_id))


async def queue_alert_edit(
    session: AsyncSession, chat_id: int, copy_key: str, text: str, keyboard: InlineKeyboardMarkup
) -> bool:
    """A copy of an alert (found by its key, live_alert_copies) edited to show who took or resolved it."""
    edit = EditText(text=text, reply_markup=_markup(keyboard), edit_of=copy_key)
    return await enqueue(session, chat_id, edit)


async def queue_alert_thanks(session: AsyncSession, chat_id: int, alert_id: int, text: str) -> bool:
    """The customer thanked once their alert is resolved."""
    return await enqueue(session, chat_id, SendText(text=text), dedupe_key=keys.alert_thanks(alert_id))


async def queue_digest(
    session: AsyncSession,
    chat_id: int,
    project_id: int,
    day: dt.date,
    *,
    chart_key: str,
    text: str,
    keyboard: InlineKeyboardMarkup,
) -> None:
    """A day's digest: its chart (a PNG in the blob store, infra.storage) and its text with buttons."""
    await enqueue(
        session,
        chat_id,
        SendChart(blob_key=chart_key),
        dedupe_key=keys.digest_chart(project_id, day, chat_id),
    )
    message = SendText(text=text, reply_markup=_markup(keyboard))
    await enqueue(session, chat_id, message, dedupe_key=keys.digest(project_id, day, chat_id))


# Clients and anyone


async def queue_client_survey(
    session: AsyncSession,
    chat_id: int,
    survey_id: int,
    text: str,
    keyboard: InlineKeyboardMarkup,
    *,
    reminder: bool,
) -> bool:
    """A client survey round's question, or its one reminder."""
    message = SendText(text=text, reply_markup=_markup(keyboard))
    return await enqueue(
        session, chat_id, message, dedupe_key=keys.client_survey(survey_id, reminder=reminder)
    )


async def queue_notice(session: AsyncSession, chat_id: int, text: str) -> bool:
    """A plain notice with no key (e.g. an update the bot gave up on): queued each time it is called."""
    return await enqueue(session, chat_id, SendText(text=text))
