"""Promoters: report a contact (form, then the dialogue recording), enrol their voice, see results, dispute.

Every step keeps its place in the FSM storage (database or Redis), so a restart mid-form resumes it.
Button payloads carry the question index: a press on an old question's button is refused, not applied.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import PurePath
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.filters import HasRole
from models import Project, Role, User, crypto
from services import intake, surveys, updates
from services.audio import AudioBounds, AudioProblem, AudioRejected, check_recording, precheck
from services.forms import (
    DEFAULT_FORM,
    AnswerError,
    FormSchema,
    Question,
    localized,
    parse_form,
    parse_typed_answer,
)
from services.outbox import enqueue
from services.storage import AudioStore
from services.users import Roles
from telegram_ui.cards import DisputeButton, receipt_text
from telegram_ui.promoter_menu import MENU_MY, MENU_NEW, Enrolment, menu_keyboard, offer_enrolment
from telegram_ui.texts import audio_problem, dispute_problem


class Intake(StatesGroup):
    answering = State()
    recording = State()


class Disputing(StatesGroup):
    reason = State()


class ProjectPick(CallbackData, prefix="pp"):
    project_id: int


class FormButton(CallbackData, prefix="f"):
    action: str  # pick, toggle, done, skip, consent, back, cancel
    q: int
    v: int = -1


def form_of(project: Project) -> FormSchema:
    return parse_form(project.form_schema or DEFAULT_FORM)


# -- starting a contact -----------------------------------------------------------------------------
async def new_contact(
    message: Message, state: FSMContext, session: AsyncSession, roles: Roles, i18n: I18n
) -> None:
    await state.clear()
    project_ids = roles.projects(Role.PROMOTER)
    if len(project_ids) == 1:
        project = await session.get(Project, project_ids[0])
        assert project is not None
        await _start_form(message, state, project, i18n, edit=False)
        return
    keyboard = InlineKeyboardBuilder()
    for membership in roles.memberships:
        if membership.role == Role.PROMOTER:
            keyboard.button(
                text=membership.project.name, callback_data=ProjectPick(project_id=membership.project_id)
            )
    keyboard.adjust(1)
    await message.answer(_("intake-choose-project"), reply_markup=keyboard.as_markup())


async def pick_project(
    query: CallbackQuery,
    callback_data: ProjectPick,
    state: FSMContext,
    session: AsyncSession,
    roles: Roles,
    i18n: I18n,
) -> None:
    project = await session.get(Project, callback_data.project_id)
    if (
        project is None
        or project.id not in roles.projects(Role.PROMOTER)
        or not isinstance(query.message, Message)
    ):
        await query.answer(_("button-forbidden"), show_alert=True)
        return
    await query.answer()
    await _start_form(query.message, state, project, i18n, edit=True)


async def _start_form(
    message: Message, state: FSMContext, project: Project, i18n: I18n, *, edit: bool
) -> None:
    await state.set_state(Intake.answering)
    data = {"project_id": project.id, "index": 0, "answers": {}, "multi": [], "phone_step": None}
    await state.set_data(data)
    await _show_step(message, form_of(project), data, i18n.current_locale, edit=edit)


# -- rendering ----------------------------------------------------------------------------------------
def _question_text(question: Question, data: dict[str, Any], total: int, locale: str) -> str:
    head = _("intake-question").format(
        n=data["index"] + 1, total=total, text=hd.quote(localized(question.text, locale))
    )
    hints = {
        "number": _("intake-hint-number"),
        "text": _("intake-hint-text"),
        "multi": _("intake-hint-multi"),
    }
    if question.type == "phone":
        hint = _("intake-phone-number") if data.get("phone_step") == "number" else _("intake-phone-consent")
    else:
        hint = hints.get(question.type, "")
    return f"{head}\n{hint}" if hint else head


def _question_keyboard(question: Question, data: dict[str, Any], locale: str) -> InlineKeyboardMarkup:
    q = data["index"]
    keyboard = InlineKeyboardBuilder()
    sizes: list[int] = []
    if question.type == "choice":
        for v, option in enumerate(question.options):
            keyboard.button(
                text=localized(option.text, locale), callback_data=FormButton(action="pick", q=q, v=v)
            )
        sizes += [1] * len(question.options)
    elif question.type == "multi":
        for v, option in enumerate(question.options):
            mark = "✅ " if option.key in data.get("multi", []) else ""
            keyboard.button(
                text=mark + localized(option.text, locale),
                callback_data=FormButton(action="toggle", q=q, v=v),
            )
        keyboard.button(text=_("btn-done"), callback_data=FormButton(action="done", q=q))
        sizes += [1] * (len(question.options) + 1)
    elif question.type == "yes_no":
        keyboard.button(text=_("btn-yes"), callback_data=FormButton(action="pick", q=q, v=1))
        keyboard.button(text=_("btn-no"), callback_data=FormButton(action="pick", q=q, v=0))
        sizes.append(2)
    elif question.type == "phone" and data.get("phone_step") != "number":
        keyboard.button(text=_("btn-consent-yes"), callback_data=FormButton(action="consent", q=q, v=1))
        keyboard.button(text=_("btn-consent-no"), callback_data=FormButton(action="consent", q=q, v=0))
        sizes.append(1)
        sizes.append(1)
    if question.optional and question.type != "phone":
        keyboard.button(text=_("btn-skip"), callback_data=FormButton(action="skip", q=q))
        sizes.append(1)
    _navigation(keyboard, q, sizes)
    keyboard.adjust(*sizes)
    return keyboard.as_markup()


def _navigation(keyboard: InlineKeyboardBuilder, q: int, sizes: list[int]) -> None:
    if q > 0:
        keyboard.button(text=_("btn-back"), callback_data=FormButton(action="back", q=q))
    keyboard.button(text=_("btn-cancel"), callback_data=FormButton(action="cancel", q=q))
    sizes.append(2 if q > 0 else 1)


async def _show_step(
    message: Message, schema: FormSchema, data: dict[str, Any], locale: str, *, edit: bool
) -> None:
    total = len(schema.questions)
    if data["index"] >= total:
        keyboard = InlineKeyboardBuilder()
        sizes: list[int] = []
        _navigation(keyboard, data["index"], sizes)
        text, markup = _("intake-record"), keyboard.as_markup()
    else:
        question = schema.questions[data["index"]]
        text, markup = (
            _question_text(question, data, total, locale),
            _question_keyboard(question, data, locale),
        )
    if edit:
        try:
            await message.edit_text(text, reply_markup=markup)
            return
        except TelegramBadRequest:
            pass  # the message is too old to edit or unchanged: send a fresh one
    await message.answer(text, reply_markup=markup)


# -- answering ------------------------------------------------------------------------------------------
async def _advance(state: FSMContext, data: dict[str, Any], schema: FormSchema) -> None:
    data["index"] += 1
    data["multi"], data["phone_step"] = [], None
    if data["index"] >= len(schema.questions):
        await state.set_state(Intake.recording)
    await state.set_data(data)


async def on_form_button(
    query: CallbackQuery, callback_data: FormButton, state: FSMContext, session: AsyncSession, i18n: I18n
) -> None:
    data = await state.get_data()
    message = query.message
    project = await session.get(Project, data.get("project_id", 0))
    if project is None or callback_data.q != data.get("index") or not isinstance(message, Message):
        await query.answer(_("button-invalid"), show_alert=True)
        return
    schema = form_of(project)
    q = data["index"]
    question = schema.questions[q] if q < len(schema.questions) else None
    action, v = callback_data.action, callback_data.v

    if action == "cancel":
        await state.clear()
        await query.answer()
        await message.edit_text(_("intake-cancelled"))
        return
    if action == "back":
        if q == 0:
            await query.answer(_("button-invalid"), show_alert=True)
            return
        data["index"] = q - 1
        previous = schema.questions[q - 1]
        old = data["answers"].pop(previous.key, None)
        data["multi"] = list(old) if previous.type == "multi" and isinstance(old, list) else []
        data["phone_step"] = None
        await state.set_state(Intake.answering)
        await state.set_data(data)
    else:
        outcome = _apply_answer(question, action, v, data)
        if outcome == "invalid":
            await query.answer(_("button-invalid"), show_alert=True)
            return
        if outcome == "need_one":
            await query.answer(_("intake-choose-one"), show_alert=True)
            return
        if outcome == "advance":
            await _advance(state, data, schema)
        else:
            await state.set_data(data)
    await query.answer()
    await _show_step(message, schema, data, i18n.current_locale, edit=True)


def _apply_answer(question: Question | None, action: str, v: int, data: dict[str, Any]) -> str:
    """Apply one button press to the form data: "advance", "stay", "need_one" or "invalid" (forged/stale)."""
    if question is None:
        return "invalid"
    answers = data["answers"]
    if action == "pick" and question.type == "choice" and 0 <= v < len(question.options):
        answers[question.key] = question.options[v].key
        return "advance"
    if action == "pick" and question.type == "yes_no" and v in (0, 1):
        answers[question.key] = bool(v)
        return "advance"
    if action == "toggle" and question.type == "multi" and 0 <= v < len(question.options):
        key, chosen = question.options[v].key, data.get("multi", [])
        data["multi"] = [k for k in chosen if k != key] if key in chosen else [*chosen, key]
        return "stay"
    if action == "done" and question.type == "multi":
        if not data.get("multi") and not question.optional:
            return "need_one"
        order = [o.key for o in question.options]
        answers[question.key] = sorted(data.get("multi", []), key=order.index)
        return "advance"
    if action == "consent" and question.type == "phone" and v in (0, 1):
        if v == 1:
            data["phone_step"] = "number"
            return "stay"
        answers[question.key] = {"consent": False}
        return "advance"
    if action == "skip" and question.optional:
        answers[question.key] = None
        return "advance"
    return "invalid"


async def on_typed_answer(message: Message, state: FSMContext, session: AsyncSession, i18n: I18n) -> None:
    data = await state.get_data()
    project = await session.get(Project, data.get("project_id", 0))
    if project is None:
        await state.clear()
        await message.answer(_("intake-cancelled"))
        return
    schema = form_of(project)
    question = schema.questions[data["index"]]
    if question.type == "phone" and data.get("phone_step") != "number":
        await message.answer(_("form-error-use-buttons"))
        return
    try:
        value = parse_typed_answer(question, message.text or "")
    except AnswerError as exc:
        await message.answer(_(exc.key).format(**exc.params))
        return
    # A phone number is sealed at once: the form's state and the contact only ever hold it encrypted.
    data["answers"][question.key] = (
        {"consent": True, "number": crypto.seal(value)} if question.type == "phone" else value
    )
    await _advance(state, data, schema)
    await _show_step(message, schema, data, i18n.current_locale, edit=False)


# -- recordings -------------------------------------------------------------------------------------------
async def _receive_recording(message: Message, bot: Bot, bounds: AudioBounds) -> intake.Recording:
    """Download and check the voice note / audio file / audio document; raises AudioRejected."""
    if message.voice:
        media: Any = message.voice
        mime, suffix = message.voice.mime_type or "audio/ogg", ".ogg"
    elif message.audio:
        media, mime = message.audio, message.audio.mime_type or "audio/mpeg"
        suffix = PurePath(message.audio.file_name or "a.mp3").suffix or ".mp3"
    elif message.document:
        media, mime = message.document, message.document.mime_type or "application/octet-stream"
        suffix = PurePath(message.document.file_name or "a.bin").suffix or ".bin"
    else:
        raise AudioRejected(AudioProblem.NOT_AUDIO)
    precheck(mime, media.file_size, getattr(media, "duration", None), bounds)
    buffer = io.BytesIO()
    try:
        await bot.download(media.file_id, destination=buffer)
    except TelegramBadRequest as exc:
        if "too big" in exc.message:
            raise AudioRejected(AudioProblem.TOO_BIG) from exc
        raise
    data = buffer.getvalue()
    check = await asyncio.to_thread(check_recording, data, bounds)
    return intake.Recording(data, check, suffix.lower()[:8], mime, media.file_id, media.file_unique_id)


async def _receive_outside_transaction(
    session: AsyncSession,
    message: Message,
    bot: Bot,
    update_id: int,
    bounds: AudioBounds,
    *,
    typing: bool = False,
) -> tuple[bool, intake.Recording | None, AudioProblem | None]:
    """Download and decode with no transaction open (services.updates.pause_for_io), then claim the update
    again: (claimed, recording, problem); not claimed means a redelivered copy was handled meanwhile."""
    await updates.pause_for_io(session)
    recording: intake.Recording | None = None
    problem: AudioProblem | None = None
    try:
        if typing:
            await bot.send_chat_action(message.chat.id, "typing")
        recording = await _receive_recording(message, bot, bounds)
    except AudioRejected as exc:
        problem = exc.problem
    return await updates.resume_after_io(session, bot.id, update_id), recording, problem


async def on_recording(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    bot: Bot,
    audio_store: AudioStore,
    event_update: Any,
    roles: Roles,
) -> None:
    data = await state.get_data()
    project = await session.get(Project, data.get("project_id", 0))
    if project is None:
        await state.clear()
        await message.answer(_("intake-cancelled"))
        return
    if project.id not in roles.projects(Role.PROMOTER):  # removed from the project while filling the form
        await state.clear()
        await message.answer(_("intake-not-member").format(project=hd.quote(project.name)))
        return
    bounds, project_id, user_id, form = intake.bounds_for(project), project.id, user.id, dict(data)
    claimed, recording, problem = await _receive_outside_transaction(
        session, message, bot, event_update.update_id, bounds, typing=True
    )
    if not claimed:
        return  # a redelivered copy of this update was handled meanwhile
    if problem is not None or recording is None:
        await message.answer(audio_problem(problem or AudioProblem.UNDECODABLE, bounds))
        return
    promoter, current = await session.get(User, user_id), await session.get(Project, project_id)
    if (
        promoter is None
        or current is None
        or await state.get_state() != Intake.recording.state
        or (await state.get_data()) != form
    ):  # the form was cancelled or restarted while the recording downloaded
        await message.answer(_("intake-form-changed"))
        return
    user, project = promoter, current
    earlier = await intake.recent_resend(session, user, project, recording.data)
    if earlier is not None:  # a resend (a receipt that did not arrive, a double tap), not a new contact
        await state.clear()
        await message.answer(_("intake-already-received").format(id=earlier.id))
        return
    contact, _flags = await intake.create_contact(
        session,
        audio_store,
        project=project,
        promoter=user,
        answers=form.get("answers", {}),
        recording=recording,
        source_update_id=event_update.update_id,
    )
    await state.clear()  # with the SQL storage, in the same transaction as the contact
    # The receipt and the survey code go through the outbox in the contact's own transaction: once the
    # contact exists, they are delivered even if this process dies right after the commit. No reply
    # keyboard on the receipt: Telegram never lets a message that carries one be edited, and the receipt
    # is edited as the contact moves on (jobs/receipts.py). The menu stays from the earlier messages.
    await enqueue(
        session,
        message.chat.id,
        "sendMessage",
        {"text": receipt_text(contact)},
        dedupe_key=f"receipt:{contact.id}",
    )
    contact.receipt_status = contact.status
    survey = await intake.survey_of(session, contact)
    if survey is not None:
        link = surveys.survey_link((await bot.me()).username or "", survey.token)
        await enqueue(
            session,
            message.chat.id,
            "sendPhoto",
            {"qr": link, "caption": _("survey-qr-caption").format(link=link)},
            dedupe_key=f"survey-qr:{contact.id}",
        )


async def on_not_a_recording(message: Message, session: AsyncSession, state: FSMContext) -> None:
    data = await state.get_data()
    project = await session.get(Project, data.get("project_id", 0))
    bounds = intake.bounds_for(project) if project else intake.ENROLMENT_BOUNDS
    await message.answer(audio_problem(AudioProblem.NOT_AUDIO, bounds))


async def on_recording_out_of_turn(message: Message) -> None:
    await message.answer(_("intake-voice-out-of-turn"), reply_markup=menu_keyboard())


# -- voice enrolment ------------------------------------------------------------------------------------
async def enrol_command(message: Message, state: FSMContext) -> None:
    await offer_enrolment(message, state)


async def on_enrolment(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    bot: Bot,
    audio_store: AudioStore,
    event_update: Any,
) -> None:
    user_id = user.id
    claimed, recording, problem = await _receive_outside_transaction(
        session, message, bot, event_update.update_id, intake.ENROLMENT_BOUNDS
    )
    if not claimed:
        return  # a redelivered copy of this update was handled meanwhile
    if problem is not None or recording is None:
        await message.answer(audio_problem(problem or AudioProblem.UNDECODABLE, intake.ENROLMENT_BOUNDS))
        return
    promoter = await session.get(User, user_id)
    if promoter is None:
        return
    await intake.save_enrolment(session, audio_store, promoter, recording)
    await state.clear()
    await session.commit()
    await message.answer(_("enrol-saved"), reply_markup=menu_keyboard())


# -- results and disputes ---------------------------------------------------------------------------------
async def my_results(message: Message, session: AsyncSession, user: User, roles: Roles) -> None:
    parts = []
    keyboard = InlineKeyboardBuilder()
    for membership in roles.memberships:
        if membership.role != Role.PROMOTER:
            continue
        stats = await intake.promoter_stats(session, user, membership.project)
        rate = f"{stats.approval_rate:.0%}" if stats.approval_rate is not None else "—"
        average = f"{stats.average_score:.0f}%" if stats.average_score is not None else "—"
        lines = [
            f"<b>{hd.quote(membership.project.name)}</b>",
            _("my-counts").format(today=stats.today, week=stats.week),
            _("my-quality").format(reviewed=stats.reviewed, rate=rate, average=average),
        ]
        if stats.last_feedback:
            fb = stats.last_feedback
            lines.append(
                _("my-last-feedback").format(
                    id=fb.contact_id, score=f"{fb.score:.0f}", comment=hd.quote(fb.comment or "—")
                )
            )
        parts.append("\n".join(lines))
        for contact_id in stats.disputable:
            keyboard.button(
                text=_("my-dispute-button").format(id=contact_id),
                callback_data=DisputeButton(contact_id=contact_id),
            )
    keyboard.adjust(1)
    await message.answer("\n\n".join(parts) or _("my-none"), reply_markup=keyboard.as_markup())


async def dispute_pressed(
    query: CallbackQuery, callback_data: DisputeButton, state: FSMContext, session: AsyncSession, user: User
) -> None:
    try:
        await intake.check_disputable(session, user, callback_data.contact_id)
    except intake.DisputeError as exc:
        await query.answer(dispute_problem(exc.problem), show_alert=True)
        return
    await state.set_state(Disputing.reason)
    await state.set_data({"contact_id": callback_data.contact_id})
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(_("dispute-ask-reason").format(id=callback_data.contact_id))


async def dispute_reason(message: Message, state: FSMContext, session: AsyncSession, user: User) -> None:
    contact_id = int((await state.get_data()).get("contact_id", 0))
    try:
        await intake.open_dispute(session, user, contact_id, message.text or "")
    except intake.DisputeError as exc:
        await message.answer(dispute_problem(exc.problem))
        if exc.problem != intake.DisputeProblem.EMPTY_REASON:
            await state.clear()
        return
    await state.clear()
    await session.commit()
    await message.answer(_("dispute-opened").format(id=contact_id), reply_markup=menu_keyboard())


async def cancel_command(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(_("intake-cancelled"), reply_markup=menu_keyboard())


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.filter(HasRole(Role.PROMOTER))
    router.callback_query.filter(HasRole(Role.PROMOTER))
    audio_like = F.voice | F.audio | F.document
    router.message.register(cancel_command, Command("cancel"))
    router.message.register(new_contact, Command("new"))
    router.message.register(new_contact, F.text == MENU_NEW)
    router.message.register(my_results, Command("my"))
    router.message.register(my_results, F.text == MENU_MY)
    router.message.register(enrol_command, Command("enrol"))
    router.callback_query.register(pick_project, ProjectPick.filter())
    router.callback_query.register(
        on_form_button, FormButton.filter(), StateFilter(Intake.answering, Intake.recording)
    )
    router.message.register(on_typed_answer, StateFilter(Intake.answering), F.text)
    router.message.register(on_recording, StateFilter(Intake.recording), audio_like)
    router.message.register(on_not_a_recording, StateFilter(Intake.recording))
    router.message.register(on_enrolment, StateFilter(Enrolment.recording), audio_like)
    router.message.register(on_not_a_recording, StateFilter(Enrolment.recording), ~F.text.startswith("/"))
    router.callback_query.register(dispute_pressed, DisputeButton.filter())
    router.message.register(dispute_reason, StateFilter(Disputing.reason), F.text)
    router.message.register(on_recording_out_of_turn, StateFilter(None), audio_like)
    router.edited_message.filter(HasRole(Role.PROMOTER))
    router.edited_message.register(on_edited_answer, StateFilter(Intake.answering, Intake.recording))
    return router


async def on_edited_answer(message: Message) -> None:
    """Telegram tells the bot about edits; an answer already taken stays as sent, and the person is told so
    rather than left thinking the edit counted."""
    await message.answer(_("intake-edit-not-applied"))
