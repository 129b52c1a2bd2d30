"""Reviewer cards and the messages around reviews, rendered in the recipient's language.

Used by the reviewer router (edits in place after a press) and by the jobs (new cards, expiry notes,
feedback, alerts), which is why it lives apart from both.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from enum import StrEnum
from html import unescape
from typing import Any

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from infra.messages import SendVoice
from models import (
    Assignment,
    AssignmentKind,
    Audio,
    Contact,
    FlagKind,
    Project,
    Review,
    User,
    Verdict,
    VoiceFlag,
)
from models.payloads import (
    SelfRecording,
    ShortenedAudio,
    SurveyFastAnswer,
    SurveyFreshAccounts,
    SurveySameRespondent,
)
from services.contact_view import ContactView, contact_view, dialogue_audio
from services.forms import DEFAULT_FORM, describe_answers, localized, parse_form
from services.scorecard import Marks, Scorecard, scorecard_of
from services.speech.report import MachineVerdict, ScriptCheck, SpokenLine, machine_marks
from telegram_ui import notify
from telegram_ui.callbacks import CardAction, CardButton, TakeButton, UndoButton
from telegram_ui.texts import contact_status
from telegram_ui.times import local_time

VERDICTS = (Verdict.APPROVE, Verdict.REJECT, Verdict.FRAUD)
CARD_LIMIT = 4096  # Telegram's message limit, in UTF-16 code units of the visible text
ANSWER_ON_CARD = 300  # characters of one answer on a card; the whole form goes in a message before it
COMMENT_ON_CARD = 500
LINE_ON_CARD = 300  # characters of one transcript line on a card
QUOTE_ON_CARD = 80  # characters of a script check's quote
CHECKS_ON_CARD = 12
REASONS_ON_CARD = 4
MACHINE_MARK = "🤖"  # on a mark the speech checks pre-filled and the reviewer has not changed
CHECK_ICONS = {"done": "✅", "not_done": "❌", "unsure": "❔"}


def flag_line(flag: VoiceFlag) -> str:
    """One line per flag. A self-recording judgement says how sure it is and why, and an unsure one asks
    the reviewer to listen instead of accusing."""
    details = flag.details
    matches = ", ".join(f"#{c}" for c in flag.matched_contact_ids[:5]) or "—"
    match details:
        case SurveySameRespondent():
            return _("card-flag-survey-same").format(matches=matches)
        case SurveyFastAnswer(seconds=seconds):
            return _("card-flag-survey-fast").format(seconds=f"{seconds:.0f}")
        case SurveyFreshAccounts():
            return _("card-flag-survey-fresh").format(
                fresh=details.fresh, answers=details.answers, percent=f"{details.expected:.0%}"
            )
        case SelfRecording(confidence="likely" | "unsure" as confidence):
            key = "card-flag-likely" if confidence == "likely" else "card-flag-unsure"
            return _(key).format(
                flag=flag_name(flag.kind), percent=f"{flag.score:.0%}", why=flag_reason(details)
            )
    return _("card-flag").format(flag=flag_name(flag.kind), score=f"{flag.score:.2f}", matches=matches)


def flag_reason(details: SelfRecording) -> str:
    why = details.why
    speech, second = float(why.get("speech", 0)), float(why.get("second", 0))
    if details.kind == FlagKind.CUSTOMER_IS_PROMOTER and "enrol_customer" in why:
        return _("why-customer-like-promoter").format(
            second=f"{second:.0f}",
            customer=f"{why['enrol_customer']:.2f}",
            promoter=f"{why['enrol_promoter']:.2f}",
        )
    if second < 3:
        return _("why-one-voice-short-second").format(speech=f"{speech:.0f}", second=f"{second:.0f}")
    return _("why-one-voice").format(speech=f"{speech:.0f}", second=f"{second:.0f}")


def verdict_name(verdict: Verdict) -> str:
    return {
        Verdict.APPROVE: _("verdict-approve"),
        Verdict.REJECT: _("verdict-reject"),
        Verdict.FRAUD: _("verdict-fraud"),
    }[verdict]


def verdict_result(verdict: Verdict) -> str:
    return {
        Verdict.APPROVE: _("result-approve"),
        Verdict.REJECT: _("result-reject"),
        Verdict.FRAUD: _("result-fraud"),
    }[verdict]


def flag_name(kind: FlagKind) -> str:
    return {
        FlagKind.NO_CUSTOMER: _("flag-no-customer"),
        FlagKind.CUSTOMER_IS_PROMOTER: _("flag-customer-is-promoter"),
        FlagKind.REPEATED_CUSTOMER: _("flag-repeated-customer"),
        FlagKind.CUSTOMER_IS_OTHER_PROMOTER: _("flag-customer-is-other-promoter"),
        FlagKind.DUPLICATE_RECORDING: _("flag-duplicate-recording"),
        FlagKind.LOW_SPEECH: _("flag-low-speech"),
        FlagKind.SURVEY_SAME_RESPONDENT: _("flag-survey-same"),
        FlagKind.SURVEY_FAST_ANSWER: _("flag-survey-fast"),
        FlagKind.SURVEY_FRESH_ACCOUNTS: _("flag-survey-fresh"),
    }[kind]


def _mark_label(
    scorecard: Scorecard, index: int, marks: dict[str, Any], locale: str, machine: Marks | None = None
) -> str:
    criterion = scorecard.criteria[index]
    name = localized(criterion.text, locale)
    value = marks.get(criterion.key)
    by_machine = (
        f" {MACHINE_MARK}" if machine and value is not None and machine.get(criterion.key) == value else ""
    )
    if criterion.type == "yes_no":
        icon = "▫️" if value is None else ("✅" if value else "❌")
        return f"{icon} {name}{by_machine}"
    shown = "–" if value is None else str(value)
    return (
        f"{'❗' if criterion.critical and value == 0 else '🔢'} {name}: {shown}/{criterion.max}{by_machine}"
    )


def prefilled(view: ContactView, assignment: Assignment) -> Marks:
    """The marks the speech checks pre-filled on this card (services.review.prefill_marks): marked on the
    card while the reviewer keeps them."""
    if (
        view.speech is None
        or assignment.kind == AssignmentKind.CALIBRATION
        or not (view.project.speech_settings or {}).get("enabled")
    ):
        return {}
    return machine_marks(view.speech.checks, scorecard_of(view.project.scorecard))


def card_keyboard(view: ContactView, assignment: Assignment, locale: str) -> InlineKeyboardMarkup:
    scorecard = scorecard_of(view.project.scorecard)
    machine = prefilled(view, assignment)
    keyboard = InlineKeyboardBuilder()
    for index in range(len(scorecard.criteria)):
        keyboard.button(
            text=_mark_label(scorecard, index, assignment.draft_marks, locale, machine),
            callback_data=CardButton(action=CardAction.MARK, assignment=assignment.id, k=index),
        )
    for index, verdict in enumerate(VERDICTS):
        keyboard.button(
            text=verdict_name(verdict),
            callback_data=CardButton(action=CardAction.VERDICT, assignment=assignment.id, k=index),
        )
    keyboard.button(
        text=_("btn-comment"), callback_data=CardButton(action=CardAction.COMMENT, assignment=assignment.id)
    )
    keyboard.button(
        text=_("btn-return"), callback_data=CardButton(action=CardAction.RETURN, assignment=assignment.id)
    )
    keyboard.adjust(*([1] * len(scorecard.criteria)), 3, 2)
    return keyboard.as_markup()


def card_text(view: ContactView, assignment: Assignment, locale: str) -> str:
    contact, project = view.contact, view.project
    scorecard = scorecard_of(project.scorecard)
    head = [_("card-title").format(id=contact.id, project=hd.quote(project.name))]
    if assignment.kind != "primary":
        head.append(_("card-kind-rereview") if assignment.kind == "rereview" else _("card-kind-calibration"))
    answers = answer_lines(contact, project, locale)
    facts = [flag_line(flag) for flag in view.flags]
    heard = voices_line(view)
    if heard:
        facts.append(heard)
    # The rating part: never shortened (the transcript, then the answers, give way to it).
    rating = []
    machine = prefilled(view, assignment)
    if any(assignment.draft_marks.get(key) == value for key, value in machine.items()):
        rating.append(_("card-marks-prefilled").format(mark=MACHINE_MARK))
    rating.append(_("card-score").format(score=f"{scorecard.score(assignment.draft_marks):.0f}"))
    if assignment.draft_comment:
        comment = _clip(assignment.draft_comment, COMMENT_ON_CARD)
        rating.append(_("card-comment").format(comment=hd.quote(comment)))
    if assignment.deadline_at:
        # In the project's zone, named: a reviewer in Moscow read "22:54 UTC" as an hour gone by (issue #27 item 20).
        rating.append(_("card-deadline").format(time=local_time(assignment.deadline_at, project.timezone)))
    if view.speech is None:
        return fit(head, answers, [*facts, *rating])
    summary = speech_lines(view.speech.verdict, view.speech.checks)
    spoken = transcript_lines(view.speech.lines)

    def tail(kept: int) -> list[str]:
        return [*facts, *summary, *transcript_block(spoken, kept), *rating]

    # The transcript is shortened first (lines from its end, with a note), then the answers (fit).
    kept = _most_that_fit(len(spoken), lambda k: visible_length("\n".join([*head, *answers, *tail(k)])))
    return fit(head, answers, tail(kept))


def _most_that_fit(count: int, length: Callable[[int], int], limit: int = CARD_LIMIT) -> int:
    """The most of `count` lines that keep the card within the limit (the length grows with them)."""
    if length(count) <= limit:
        return count
    low, high = 0, count - 1  # high: the answer is at most this
    while low < high:
        middle = (low + high + 1) // 2
        if length(middle) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def check_name(key: str) -> str:
    """A script check's name: the default script's items by name, a project's own by their key."""
    names = {
        "greeting": _("script-greeting"),
        "product_named": _("script-product-named"),
        "presentation": _("script-presentation"),
        "offer": _("script-offer"),
        "goodbye": _("script-goodbye"),
        "customer_share": _("script-customer-share"),
    }
    return names.get(key) or key.replace("_", " ")


def _reason(code: str) -> str | None:
    kind, _sep, key = code.partition(":")
    if kind == "flag":
        try:
            return flag_name(FlagKind(key))
        except ValueError:
            return None
    if kind == "critical_failed":
        return _("speech-reason-critical-failed").format(check=check_name(key))
    if kind == "unsure":
        return _("speech-reason-unsure").format(check=check_name(key))
    return {
        "low_recognition": _("speech-reason-low-recognition"),
        "low_confidence": _("speech-reason-low-confidence"),
        "script_incomplete": _("speech-reason-script-incomplete"),
        "script_partly_done": _("speech-reason-script-partly-done"),
    }.get(code)


def machine_verdict_line(verdict: MachineVerdict) -> str:
    """The machine's verdict, or where a person decides its leaning, with its reasons: one short line."""
    if verdict.decision == "for_person":
        decision = {
            "approve": _("speech-leaning-approve"),
            "reject": _("speech-leaning-reject"),
        }.get(verdict.leaning or "", _("speech-for-person"))
    else:
        decision = {"approve": _("speech-would-approve"), "reject": _("speech-would-reject")}.get(
            verdict.decision, hd.quote(verdict.decision)
        )
    reasons = [text for text in map(_reason, verdict.reasons) if text][:REASONS_ON_CARD]
    percent = f"{verdict.confidence:.0%}"
    if not reasons:
        return _("card-speech-verdict").format(decision=decision, percent=percent)
    return _("card-speech-verdict-why").format(
        decision=decision, percent=percent, reasons=hd.quote("; ".join(reasons))
    )


def check_line(check: ScriptCheck) -> str:
    """✅ / ❌ / ❔ and the check's name, with the words heard and when, where there are some."""
    icon, name = CHECK_ICONS.get(check.status, "❔"), hd.quote(check_name(check.key))
    if not check.quote:
        return _("card-speech-check").format(icon=icon, check=name)
    return (
        _("card-speech-check-quote")
        .format(
            icon=icon,
            check=name,
            quote=hd.quote(_clip(check.quote, QUOTE_ON_CARD)),
            time=clock(check.start) if check.start is not None else "",
        )
        .rstrip()
    )


def speech_lines(verdict: MachineVerdict | None, checks: list[ScriptCheck]) -> list[str]:
    lines = [machine_verdict_line(verdict)] if verdict is not None else []
    if checks:
        lines.append(_("card-speech-checks"))
        lines += [check_line(check) for check in checks[:CHECKS_ON_CARD]]
    return lines


def transcript_lines(lines: list[SpokenLine]) -> list[str]:
    """ "Promoter: …" / "Customer: …", each line clipped, HTML-escaped."""
    speakers = {"promoter": _("speech-speaker-promoter"), "customer": _("speech-speaker-customer")}
    return [
        _("card-transcript-line").format(
            speaker=speakers.get(line.speaker, _("speech-speaker-unknown")),
            text=hd.quote(_clip(line.text, LINE_ON_CARD)),
        )
        for line in lines
    ]


def transcript_block(spoken: list[str], kept: int) -> list[str]:
    """The first `kept` lines in an expandable quote (collapsed on the card: the reviewer opens it), and
    how many were left out to keep the card within Telegram's limit."""
    if not spoken:
        return []
    block = [_("card-transcript")]
    if kept:
        block.append("<blockquote expandable>" + "\n".join(spoken[:kept]) + "</blockquote>")
    if kept < len(spoken):
        block.append(_("card-transcript-cut").format(count=len(spoken) - kept))
    return block


def voices_line(view: ContactView) -> str | None:
    """Who the voice analysis heard and for how long, and how long two spoke at once: where to listen."""
    if not view.voices:
        return None
    roles = {"promoter": _("voice-role-promoter"), "customer": _("voice-role-customer")}
    parts = [
        _("card-voice-part").format(role=roles.get(v.role, v.role), seconds=f"{v.seconds:.0f}")
        for v in view.voices
    ]
    if view.overlap_seconds >= 1:
        parts.append(_("card-voice-overlap").format(seconds=f"{view.overlap_seconds:.0f}"))
    return _("card-voices").format(voices=" · ".join(parts))


def visible_length(html: str) -> int:
    """What Telegram counts against its 4096 limit: the text without markup, in UTF-16 code units."""
    plain = unescape(re.sub(r"<[^>]*>", "", html))
    return len(plain.encode("utf-16-le")) // 2


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def answer_lines(
    contact: Contact, project: Project, locale: str, *, clip: int | None = ANSWER_ON_CARD
) -> list[str]:
    form = parse_form(project.form_schema or DEFAULT_FORM)
    pairs = describe_answers(form, contact.form_answers, locale, _("btn-yes"), _("btn-no"))
    if clip is None:
        return [f"• {hd.quote(question)}: {hd.quote(answer)}" for question, answer in pairs]
    return [
        f"• {hd.quote(_clip(question, 120))}: {hd.quote(_clip(answer, clip))}" for question, answer in pairs
    ]


def form_is_shortened(contact: Contact, project: Project, locale: str) -> bool:
    return answer_lines(contact, project, locale) != answer_lines(contact, project, locale, clip=None)


def fit(head: list[str], body: list[str], tail: list[str], limit: int = CARD_LIMIT) -> str:
    """A card always fits Telegram's limit: body lines (answers) are dropped from the end, with a note."""
    dropped = 0
    while True:
        note = [_("card-answers-cut").format(count=dropped)] if dropped else []
        text = "\n".join([*head, *body[: len(body) - dropped], *note, *tail])
        if visible_length(text) <= limit or dropped >= len(body):
            return text
        dropped += 1


def full_form_messages(contact: Contact, project: Project, locale: str, limit: int = CARD_LIMIT) -> list[str]:
    """The whole form in as many messages as it takes (sent before a card whose answers are shortened)."""
    title = _("card-full-form").format(id=contact.id)
    messages, current = [], [title]
    for line in answer_lines(contact, project, locale, clip=limit - 200):
        if visible_length("\n".join([*current, line])) > limit:
            messages.append("\n".join(current))
            current = [title]
        current.append(line)
    messages.append("\n".join(current))
    return messages


def voice_payload(audio: Audio, caption_if_file: str) -> SendVoice:
    """The recording as a voice note, with what the outbox needs to send it as a file instead when the
    person allows voice notes from their contacts only (VOICE_MESSAGES_FORBIDDEN)."""
    return SendVoice(voice=audio.telegram_file_id, audio_key=audio.storage_key, file_caption=caption_if_file)


def shortened_payload(contact_id: int, shortened: ShortenedAudio) -> SendVoice:
    """The recording with its long pauses cut (services.pauses), uploaded from the store, captioned with
    how much shorter it is, so the reviewer knows the silences they do not hear were there."""
    return SendVoice(
        audio_key=shortened.key,
        caption=_("card-voice-pauses-cut").format(
            id=contact_id,
            seconds=f"{shortened.seconds:.0f}",
            original=f"{shortened.original_seconds:.0f}",
        ),
        file_caption=_("card-voice-as-file").format(id=contact_id),
    )


def submitted_text(review: Review) -> str:
    return _("card-submitted").format(verdict=verdict_result(review.verdict), score=f"{review.score:.0f}")


def undo_keyboard(review: Review) -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    keyboard.button(text=_("btn-undo"), callback_data=UndoButton(review=review.id))
    return keyboard.as_markup()


def feedback_text(review: Review, scorecard: Scorecard, locale: str) -> str:
    """What the promoter sees: score, failed criteria, comment; never who reviewed."""
    failed = ", ".join(localized(c.text, locale) for c in scorecard.failed(review.marks)) or "—"
    return _("feedback").format(
        id=review.contact_id,
        verdict=verdict_result(review.verdict),
        score=f"{review.score:.0f}",
        failed=hd.quote(failed),
        comment=hd.quote(review.comment or "—"),
    )


def offer_keyboard(assignment_id: int) -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    keyboard.button(text=_("btn-take"), callback_data=TakeButton(assignment=assignment_id))
    return keyboard.as_markup()


def rendered(i18n: I18n, locale: str | None, func: Any, *args: Any) -> Any:
    """Call a text builder in another person's language (jobs, and messages to someone else)."""
    with i18n.context(), i18n.use_locale(locale or i18n.default_locale):
        return func(*args)


def deadline_passed(now: dt.datetime, assignment: Assignment) -> bool:
    return assignment.deadline_at is not None and assignment.deadline_at < now


async def enqueue_card(session: AsyncSession, i18n: I18n, assignment: Assignment) -> None:
    """The voice and the card for a reviewer's private chat, through the outbox."""
    reviewer = await session.get(User, assignment.reviewer_id)
    contact = await session.get(Contact, assignment.contact_id)
    assert reviewer is not None and contact is not None
    project = await session.get(Project, contact.project_id)
    assert project is not None
    locale = reviewer.locale or i18n.default_locale
    audio = await dialogue_audio(session, contact.id)
    view = await contact_view(session, contact)
    voice = None
    if audio and (audio.telegram_file_id or audio.storage_key):  # no file id: uploaded as a voice note
        caption = rendered(i18n, locale, lambda: _("card-voice-as-file").format(id=contact.id))
        voice = voice_payload(audio, caption)
        if view.shortened is not None:  # the project's cut_pauses: the same voices, without the long waits
            voice = rendered(i18n, locale, shortened_payload, contact.id, view.shortened)
    parts: list[str] = []
    if rendered(
        i18n, locale, form_is_shortened, contact, project, locale
    ):  # shortened answers on the card: the whole form first
        parts = rendered(i18n, locale, full_form_messages, contact, project, locale)
    text = rendered(i18n, locale, card_text, view, assignment, locale)
    keyboard = rendered(i18n, locale, card_keyboard, view, assignment, locale)
    await notify.queue_card(
        session,
        reviewer.telegram_id,
        assignment.id,
        voice=voice,
        form_parts=parts,
        text=text,
        keyboard=keyboard,
    )


class CardClosed(StrEnum):
    """Why a reviewer's open card was closed without a verdict of theirs (the card is edited to say so)."""

    EXPIRED = "expired"  # the deadline passed
    TAKEN_BACK = "taken-back"  # the reviewer was removed from the project


def closed_card_text(reason: CardClosed, contact_id: int, project_name: str) -> str:
    if reason == CardClosed.EXPIRED:
        return str(_("card-expired")).format(id=contact_id)
    return str(_("card-taken-back")).format(id=contact_id, project=hd.quote(project_name))


async def enqueue_card_closed(
    session: AsyncSession, i18n: I18n, assignment: Assignment, reason: CardClosed
) -> None:
    """Edit the reviewer's card, through the outbox, to say it is closed and why: no "Rate by …" and no live
    buttons left on a card that is no longer theirs (the edit carries no reply_markup, so they go)."""
    if assignment.reviewer_id is None:
        return
    reviewer = await session.get(User, assignment.reviewer_id)
    contact = await session.get(Contact, assignment.contact_id)
    assert reviewer is not None and contact is not None
    project = await session.get(Project, contact.project_id)
    assert project is not None
    text = rendered(i18n, reviewer.locale, closed_card_text, reason, contact.id, project.name)
    await notify.queue_card_closed(session, reviewer.telegram_id, assignment.id, reason.value, text)


async def enqueue_offer(session: AsyncSession, i18n: I18n, assignment: Assignment, chat_id: int) -> None:
    contact = await session.get(Contact, assignment.contact_id)
    assert contact is not None
    project = await session.get(Project, contact.project_id)
    assert project is not None
    text = rendered(i18n, None, lambda: _("offer-text").format(id=contact.id, project=hd.quote(project.name)))
    keyboard = rendered(i18n, None, offer_keyboard, assignment.id)
    await notify.queue_offer(session, chat_id, assignment.id, text, keyboard)


def _status(contact: Contact) -> str:
    status = contact_status(contact.status)
    if contact.final_verdict is not None and contact.status in ("reviewed", "final"):
        status = f"{status}: {verdict_result(contact.final_verdict)}"
    return status


def receipt_text(contact: Contact) -> str:
    return _("intake-receipt").format(id=contact.id, status=_status(contact))


def receipt_status_line(contact: Contact) -> str:
    return _("contact-status-line").format(status=_status(contact))
