"""Customers: the survey opened from the QR on a promoter's receipt (`/start s_<token>`); and clients: the
periodic survey of a client company's contact people, with an Unsubscribe button.

Consent first, then the score, then one follow-up question by score; every button is re-checked against
the survey this account holds. A detractor reaches the project's managers as soon as the follow-up is
written or skipped (or, without either, from the jobs after services.surveys.FOLLOW_UP_WAIT).
"""

from __future__ import annotations

import structlog
from aiogram import F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from models import NpsCategory, NpsScale, NpsSurvey, Project, User
from services import client_surveys, surveys
from services.forms import localized
from services.surveys import SurveyError, SurveyProblem
from telegram_ui.alert_cards import raise_and_send, score_label
from telegram_ui.callbacks import ClientAction, ClientButton, SurveyAction, SurveyButton
from telegram_ui.states import ClientFlow, SurveyFlow

log = structlog.get_logger(__name__)


def survey_problem(problem: SurveyProblem) -> str:
    return {
        SurveyProblem.UNKNOWN: _("survey-unknown"),
        SurveyProblem.EXPIRED: _("survey-expired"),
        SurveyProblem.ANSWERED: _("survey-answered"),
        SurveyProblem.TAKEN: _("survey-taken"),
        SurveyProblem.DECLINED: _("survey-declined-already"),
        SurveyProblem.RECENTLY_SURVEYED: _("survey-recently"),
        SurveyProblem.STAFF: _("survey-staff"),
        SurveyProblem.CLOSED: _("survey-closed"),
    }[problem]


def _consent_keyboard(survey: NpsSurvey) -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    keyboard.button(
        text=_("btn-survey-agree"), callback_data=SurveyButton(action=SurveyAction.AGREE, s=survey.id)
    )
    keyboard.button(
        text=_("btn-survey-decline"), callback_data=SurveyButton(action=SurveyAction.DECLINE, s=survey.id)
    )
    keyboard.adjust(2)
    return keyboard.as_markup()


def _scale_keyboard(survey: NpsSurvey) -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    for score in surveys.valid_scores(survey.scale):
        label = score_label(survey.scale, score) if survey.scale == NpsScale.THREE_POINT else str(score)
        keyboard.button(
            text=label, callback_data=SurveyButton(action=SurveyAction.SCORE, s=survey.id, v=score)
        )
    keyboard.adjust(3 if survey.scale == NpsScale.THREE_POINT else 6)
    return keyboard.as_markup()


async def on_client_button(
    query: CallbackQuery,
    callback_data: ClientButton,
    session: AsyncSession,
    user: User,
    state: FSMContext,
    i18n: I18n,
) -> None:
    if not isinstance(query.message, Message):
        return
    message = query.message
    try:
        if callback_data.action == ClientAction.UNSUBSCRIBE:
            await client_surveys.unsubscribe(session, callback_data.s, user)
            await query.answer()
            await message.edit_text(_("client-unsubscribed"))
        elif callback_data.action == ClientAction.SCORE:
            survey = await client_surveys.answer(session, callback_data.s, user, callback_data.v)
            assert survey.score is not None and survey.category is not None
            await state.set_state(ClientFlow.follow_up)
            await state.update_data(client_survey_id=survey.id)
            await query.answer()
            await message.edit_text(_("survey-scored").format(score=score_label(survey.scale, survey.score)))
            keyboard = InlineKeyboardBuilder()
            keyboard.button(
                text=_("btn-survey-skip"), callback_data=ClientButton(action=ClientAction.SKIP, s=survey.id)
            )
            await message.answer(_follow_up_question(survey.category), reply_markup=keyboard.as_markup())
        else:  # SKIP
            await _client_finish(session, user, callback_data.s, None, state, i18n)
            await query.answer()
            await message.edit_text(_("survey-thanks"))
    except SurveyError as exc:
        await query.answer(survey_problem(exc.problem), show_alert=True)


async def _client_finish(
    session: AsyncSession, user: User, survey_id: int, text: str | None, state: FSMContext, i18n: I18n
) -> None:
    await state.clear()
    request = await client_surveys.follow_up(session, survey_id, user, text)
    if request is not None:
        await raise_and_send(session, i18n, request)


async def on_client_follow_up(
    message: Message, session: AsyncSession, user: User, state: FSMContext, i18n: I18n
) -> None:
    survey_id = int((await state.get_data()).get("client_survey_id", 0))
    try:
        await _client_finish(session, user, survey_id, message.text or "", state, i18n)
    except SurveyError as exc:
        await message.answer(survey_problem(exc.problem))
        return
    await message.answer(_("survey-thanks"))


def _question(project: Project, survey: NpsSurvey, locale: str) -> str:
    own = localized(project.survey_question, locale) if project.survey_question else ""
    if own:
        return hd.quote(own)
    key = "survey-question-3" if survey.scale == NpsScale.THREE_POINT else "survey-question-10"
    return _(key).format(project=hd.quote(project.name))


def _follow_up_question(category: NpsCategory) -> str:
    return {
        NpsCategory.DETRACTOR: _("survey-follow-up-detractor"),
        NpsCategory.PASSIVE: _("survey-follow-up-passive"),
        NpsCategory.PROMOTER: _("survey-follow-up-promoter"),
    }[category]


async def start_survey(
    message: Message, command: CommandObject, session: AsyncSession, user: User, state: FSMContext
) -> None:
    token = (command.args or "").removeprefix(surveys.TOKEN_PREFIX)
    try:
        opened = await surveys.open_survey(session, token, user)
    except SurveyError as exc:
        log.info("survey_refused", problem=exc.problem.value)
        await message.answer(survey_problem(exc.problem))
        return
    await state.clear()
    await message.answer(
        _("survey-consent").format(project=hd.quote(opened.project.name)),
        reply_markup=_consent_keyboard(opened.survey),
    )


async def _held(query: CallbackQuery, session: AsyncSession, user: User, survey_id: int) -> NpsSurvey | None:
    try:
        return await surveys.held_survey(session, survey_id, user)
    except SurveyError as exc:
        await query.answer(survey_problem(exc.problem), show_alert=True)
        return None


async def on_survey_button(
    query: CallbackQuery,
    callback_data: SurveyButton,
    session: AsyncSession,
    user: User,
    state: FSMContext,
    i18n: I18n,
) -> None:
    survey = await _held(query, session, user, callback_data.s)
    if survey is None or not isinstance(query.message, Message):
        return
    message = query.message
    try:
        if callback_data.action == SurveyAction.DECLINE:
            await surveys.decline(session, survey.id, user)
            await query.answer()
            await message.edit_text(_("survey-declined"))
        elif callback_data.action == SurveyAction.AGREE:
            project = await session.get(Project, survey.project_id)
            assert project is not None
            if survey.status != "opened":
                raise SurveyError(
                    SurveyProblem.ANSWERED if survey.status == "answered" else SurveyProblem.EXPIRED
                )
            await query.answer()
            await message.edit_text(
                _question(project, survey, i18n.current_locale), reply_markup=_scale_keyboard(survey)
            )
        elif callback_data.action == SurveyAction.SCORE:
            answered = await surveys.answer(session, survey.id, user, callback_data.v)
            await state.set_state(SurveyFlow.follow_up)
            await state.update_data(survey_id=survey.id)
            await query.answer()
            await message.edit_text(
                _("survey-scored").format(score=score_label(survey.scale, answered.answer.score))
            )
            keyboard = InlineKeyboardBuilder()
            keyboard.button(
                text=_("btn-survey-skip"), callback_data=SurveyButton(action=SurveyAction.SKIP, s=survey.id)
            )
            await message.answer(
                _follow_up_question(answered.answer.category), reply_markup=keyboard.as_markup()
            )
        else:  # SKIP
            await _finish(session, user, survey.id, None, state, i18n)
            await query.answer()
            await message.edit_text(_("survey-thanks"))
    except SurveyError as exc:
        await query.answer(survey_problem(exc.problem), show_alert=True)


async def _finish(
    session: AsyncSession, user: User, survey_id: int, text: str | None, state: FSMContext, i18n: I18n
) -> None:
    survey, answer = await surveys.save_follow_up(session, survey_id, user, text)
    await state.clear()
    request = await surveys.detractor_alert(session, survey, answer)
    if request is not None:
        await raise_and_send(session, i18n, request)


async def on_follow_up_text(
    message: Message, session: AsyncSession, user: User, state: FSMContext, i18n: I18n
) -> None:
    survey_id = int((await state.get_data()).get("survey_id", 0))
    try:
        await _finish(session, user, survey_id, message.text or "", state, i18n)
    except SurveyError as exc:
        await state.clear()
        await message.answer(survey_problem(exc.problem))
        return
    await message.answer(_("survey-thanks"))


async def on_follow_up_other(message: Message) -> None:
    await message.answer(_("survey-follow-up-text-only"))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(
        start_survey, CommandStart(deep_link=True, magic=F.args.startswith(surveys.TOKEN_PREFIX))
    )
    router.callback_query.register(on_survey_button, SurveyButton.filter())
    router.callback_query.register(on_client_button, ClientButton.filter())
    router.message.register(on_client_follow_up, ClientFlow.follow_up, F.text, ~F.text.startswith("/"))
    router.message.register(on_follow_up_other, ClientFlow.follow_up, ~F.text)
    router.message.register(on_follow_up_text, SurveyFlow.follow_up, F.text, ~F.text.startswith("/"))
    router.message.register(on_follow_up_other, SurveyFlow.follow_up, ~F.text)
    return router
