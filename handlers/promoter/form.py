"""The contact form: starting a contact, one question at a time, typed and pressed answers.

Every step keeps its place in the FSM storage (database or Redis), so a restart mid-form resumes it.
Button payloads carry the question index: a press on an old question's button is refused, not applied.
"""

from __future__ import annotations

from typing import Any

from aiogram.exceptions import TelegramBadRequest
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

from models import Project, Role, crypto
from services.forms import (
    DEFAULT_FORM,
    AnswerError,
    FormSchema,
    Question,
    localized,
    parse_form,
    parse_typed_answer,
)
from services.users import Roles
from telegram_ui.promoter_menu import menu_keyboard


class Intake(StatesGroup):
    answering = State()
    recording = State()


class ProjectPick(CallbackData, prefix="pp"):
    project_id: int


class FormButton(CallbackData, prefix="f"):
    action: str  # pick, toggle, done, skip, consent, back, cancel
    q: int
    v: int = -1


def form_of(project: Project) -> FormSchema:
    return parse_form(project.form_schema or DEFAULT_FORM)


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


async def cancel_command(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(_("intake-cancelled"), reply_markup=menu_keyboard())


async def on_edited_answer(message: Message) -> None:
    """Telegram tells the bot about edits; an answer already taken stays as sent, and the person is told so
    rather than left thinking the edit counted."""
    await message.answer(_("intake-edit-not-applied"))
