"""The periodic client survey as a message: text in the client's language and its score buttons (sent by
jobs/customers.py through the outbox; the presses are handled in handlers/customer.py)."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd

from models import ClientSurvey, NpsScale, Project
from services import surveys
from services.forms import localized
from telegram_ui.alert_cards import score_label
from telegram_ui.callbacks import ClientAction, ClientButton


def client_survey_message(
    survey: ClientSurvey, project: Project, locale: str, reminder: bool
) -> tuple[str, InlineKeyboardMarkup]:
    """The periodic client survey (jobs/customers.py sends it through the outbox), in the client's language."""
    own = localized(project.survey_question, locale) if project.survey_question else ""
    key = "client-survey-3" if survey.scale == NpsScale.THREE_POINT else "client-survey-10"
    question = hd.quote(own) if own else _(key).format(project=hd.quote(project.name))
    text = _("client-survey-intro").format(project=hd.quote(project.name)) + "\n\n" + question
    if reminder:
        text = _("client-survey-reminder") + "\n\n" + text
    keyboard = InlineKeyboardBuilder()
    for score in surveys.valid_scores(survey.scale):
        label = score_label(survey.scale, score) if survey.scale == NpsScale.THREE_POINT else str(score)
        keyboard.button(
            text=label, callback_data=ClientButton(action=ClientAction.SCORE, s=survey.id, v=score)
        )
    keyboard.button(
        text=_("btn-client-unsubscribe"),
        callback_data=ClientButton(action=ClientAction.UNSUBSCRIBE, s=survey.id),
    )
    sizes = [3] if survey.scale == NpsScale.THREE_POINT else [6, 5]
    keyboard.adjust(*sizes, 1)
    return text, keyboard.as_markup()
