"""Promoters: report a contact (form, then the dialogue recording), enrol their voice, see results, dispute.

One router; its handlers live by concern in `form`, `recording` and `results`."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, StateFilter

from handlers.filters import HasRole, role_router
from handlers.promoter.form import (
    cancel_command,
    new_contact,
    on_edited_answer,
    on_form_button,
    on_typed_answer,
    pick_project,
)
from handlers.promoter.recording import (
    enrol_command,
    on_enrolment,
    on_not_a_recording,
    on_recording,
    on_recording_out_of_turn,
)
from handlers.promoter.results import dispute_pressed, dispute_reason, my_results
from models import Role
from telegram_ui.callbacks import DisputeButton, FormButton, ProjectPick
from telegram_ui.promoter_menu import MENU_MY, MENU_NEW
from telegram_ui.states import Disputing, Enrolment, Intake


def create_router() -> Router:
    router = role_router(__name__, Role.PROMOTER)
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
