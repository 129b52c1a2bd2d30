"""The contact form: starting a contact, one question at a time, typed and pressed answers.

Every step keeps its place in the FSM storage (database or Redis), so a restart mid-form resumes it.
Button payloads carry the question index: a press on an old question's button is refused, not applied.
"""

from __future__ import annotations

from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
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
from services.form_progress import FormAction, FormProgress, Outcome, PhoneStep
from services.forms import DEFAULT_FORM, AnswerError, FormSchema, Question, localized, parse_form
from services.users import Roles
from telegram_ui.callbacks import FormButton, ProjectPick
from telegram_ui.promoter_menu import menu_keyboard
from telegram_ui.states import Intake


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
    progress = FormProgress(project_id=project.id)
    await state.set_data(progress.to_state())
    await _show_step(message, form_of(project), progress, i18n.current_locale, edit=edit)


def _question_text(question: Question, progress: FormProgress, total: int, locale: str) -> str:
    head = _("intake-question").format(
        n=progress.index + 1, total=total, text=hd.quote(localized(question.text, locale))
    )
    hints = {
        "number": _("intake-hint-number"),
        "text": _("intake-hint-text"),
        "multi": _("intake-hint-multi"),
    }
    if question.type == "phone":
        hint = (
            _("intake-phone-number") if progress.phone_step == PhoneStep.NUMBER else _("intake-phone-consent")
        )
    else:
        hint = hints.get(question.type, "")
    return f"{head}\n{hint}" if hint else head


def _question_keyboard(question: Question, progress: FormProgress, locale: str) -> InlineKeyboardMarkup:
    q = progress.index
    keyboard = InlineKeyboardBuilder()
    sizes: list[int] = []
    if question.type == "choice":
        for v, option in enumerate(question.options):
            keyboard.button(
                text=localized(option.text, locale),
                callback_data=FormButton(action=FormAction.PICK, q=q, v=v),
            )
        sizes += [1] * len(question.options)
    elif question.type == "multi":
        for v, option in enumerate(question.options):
            mark = "✅ " if option.key in progress.multi else ""
            keyboard.button(
                text=mark + localized(option.text, locale),
                callback_data=FormButton(action=FormAction.TOGGLE, q=q, v=v),
            )
        keyboard.button(text=_("btn-done"), callback_data=FormButton(action=FormAction.DONE, q=q))
        sizes += [1] * (len(question.options) + 1)
    elif question.type == "yes_no":
        keyboard.button(text=_("btn-yes"), callback_data=FormButton(action=FormAction.PICK, q=q, v=1))
        keyboard.button(text=_("btn-no"), callback_data=FormButton(action=FormAction.PICK, q=q, v=0))
        sizes.append(2)
    elif question.type == "phone" and progress.phone_step != PhoneStep.NUMBER:
        keyboard.button(
            text=_("btn-consent-yes"), callback_data=FormButton(action=FormAction.CONSENT, q=q, v=1)
        )
        keyboard.button(
            text=_("btn-consent-no"), callback_data=FormButton(action=FormAction.CONSENT, q=q, v=0)
        )
        sizes.append(1)
        sizes.append(1)
    if question.optional and question.type != "phone":
        keyboard.button(text=_("btn-skip"), callback_data=FormButton(action=FormAction.SKIP, q=q))
        sizes.append(1)
    _navigation(keyboard, q, sizes)
    keyboard.adjust(*sizes)
    return keyboard.as_markup()


def _navigation(keyboard: InlineKeyboardBuilder, q: int, sizes: list[int]) -> None:
    if q > 0:
        keyboard.button(text=_("btn-back"), callback_data=FormButton(action=FormAction.BACK, q=q))
    keyboard.button(text=_("btn-cancel"), callback_data=FormButton(action=FormAction.CANCEL, q=q))
    sizes.append(2 if q > 0 else 1)


async def _show_step(
    message: Message, schema: FormSchema, progress: FormProgress, locale: str, *, edit: bool
) -> None:
    question = progress.question(schema)
    if question is None:
        keyboard = InlineKeyboardBuilder()
        sizes: list[int] = []
        _navigation(keyboard, progress.index, sizes)
        text, markup = _("intake-record"), keyboard.as_markup()
    else:
        text = _question_text(question, progress, len(schema.questions), locale)
        markup = _question_keyboard(question, progress, locale)
    if edit:
        try:
            await message.edit_text(text, reply_markup=markup)
            return
        except TelegramBadRequest:
            pass  # the message is too old to edit or unchanged: send a fresh one
    await message.answer(text, reply_markup=markup)


async def _save(state: FSMContext, progress: FormProgress, schema: FormSchema) -> None:
    await state.set_state(Intake.recording if progress.finished(schema) else Intake.answering)
    await state.set_data(progress.to_state())


async def on_form_button(
    query: CallbackQuery, callback_data: FormButton, state: FSMContext, session: AsyncSession, i18n: I18n
) -> None:
    progress = FormProgress.from_state(await state.get_data())
    message = query.message
    project = await session.get(Project, progress.project_id) if progress else None
    if (
        progress is None
        or project is None
        or callback_data.q != progress.index
        or not isinstance(message, Message)
    ):
        await query.answer(_("button-invalid"), show_alert=True)
        return
    schema = form_of(project)
    if callback_data.action == FormAction.CANCEL:
        await state.clear()
        await query.answer()
        await message.edit_text(_("intake-cancelled"))
        return
    if callback_data.action == FormAction.BACK:
        outcome = Outcome.STAY if progress.back(schema) else Outcome.INVALID
    else:
        outcome = progress.press(schema, callback_data.action, callback_data.v)
    if outcome in (Outcome.INVALID, Outcome.NEED_ONE):
        text = _("button-invalid") if outcome == Outcome.INVALID else _("intake-choose-one")
        await query.answer(text, show_alert=True)
        return
    await _save(state, progress, schema)
    await query.answer()
    await _show_step(message, schema, progress, i18n.current_locale, edit=True)


async def form_in_progress(
    message: Message, state: FSMContext, session: AsyncSession
) -> tuple[FormProgress, Project] | None:
    """The form being filled and its project; None once the promoter is told the intake is cancelled (no
    form in the conversation's state any more, or its project is gone)."""
    progress = FormProgress.from_state(await state.get_data())
    project = await session.get(Project, progress.project_id) if progress else None
    if progress is None or project is None:
        await state.clear()
        await message.answer(_("intake-cancelled"))
        return None
    return progress, project


async def on_typed_answer(message: Message, state: FSMContext, session: AsyncSession, i18n: I18n) -> None:
    filling = await form_in_progress(message, state, session)
    if filling is None:
        return
    progress, project = filling
    schema = form_of(project)
    if progress.finished(schema) or progress.expects_buttons(schema):
        await message.answer(_("form-error-use-buttons"))
        return
    try:
        progress.type_answer(schema, message.text or "", crypto.seal)
    except AnswerError as exc:
        await message.answer(_(exc.key).format(**exc.params))
        return
    await _save(state, progress, schema)
    await _show_step(message, schema, progress, i18n.current_locale, edit=False)


async def cancel_command(message: Message, state: FSMContext) -> None:
    """/cancel says what it cancelled: the open form (that contact is not saved), something else the bot was
    waiting for, or nothing at all, and never that nothing was saved when no form was open (right after a
    receipt it read as if the contact just sent was lost: issue #27 item 14)."""
    current = await state.get_state()
    await state.clear()
    if current in (Intake.answering.state, Intake.recording.state):
        text = _("intake-cancelled")
    elif current is None:
        text = _("intake-nothing-to-cancel")
    else:  # a dispute's reason, the voice sample, a reviewer's comment for one who also reviews
        text = _("cancelled-generic")
    await message.answer(text, reply_markup=menu_keyboard())


async def on_edited_answer(message: Message) -> None:
    """Telegram tells the bot about edits; an answer already taken stays as sent, and the person is told so
    rather than left thinking the edit counted."""
    await message.answer(_("intake-edit-not-applied"))
