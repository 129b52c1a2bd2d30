"""The dialogue recording that completes a contact, and the promoter's own voice sample (enrolment).

Downloads and decoding run with no transaction open (services.unit_of_work.UpdateUnit.outside_transaction)."""

from __future__ import annotations

import asyncio
import io
from pathlib import PurePath
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    Message,
)
from aiogram.utils.i18n import gettext as _
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.promoter.form import form_in_progress
from infra.storage import AudioStore
from models import Project, Role, User
from services import intake, surveys
from services.audio import AudioBounds, AudioProblem, AudioRejected, precheck
from services.form_progress import FormProgress
from services.unit_of_work import UpdateUnit
from services.users import Roles
from telegram_ui import downloads, notify
from telegram_ui.cards import receipt_text
from telegram_ui.promoter_menu import menu_keyboard, offer_enrolment
from telegram_ui.states import Intake
from telegram_ui.texts import audio_problem


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
        await downloads.download(bot, media.file_id, buffer)  # Telegram's short outages ridden out
    except TelegramBadRequest as exc:
        if "too big" in exc.message:
            raise AudioRejected(AudioProblem.TOO_BIG) from exc
        raise
    return await asyncio.to_thread(
        intake.prepare_recording,
        buffer.getvalue(),
        bounds,
        is_voice_note=message.voice is not None,  # anything else is kept as a voice note (issue #27)
        suffix=suffix.lower()[:8],
        mime_type=mime,
        telegram_file_id=media.file_id,
        telegram_file_unique_id=media.file_unique_id,
    )


async def _receive_outside_transaction(
    unit: UpdateUnit, message: Message, bot: Bot, bounds: AudioBounds, *, typing: bool = False
) -> tuple[bool, intake.Recording | None, AudioProblem | None]:
    """Download and decode with no transaction open, then claim the update again: (claimed, recording,
    problem); not claimed means a redelivered copy was handled meanwhile."""
    recording: intake.Recording | None = None
    problem: AudioProblem | None = None
    async with unit.outside_transaction() as after:
        try:
            if typing:
                await bot.send_chat_action(message.chat.id, "typing")
            recording = await _receive_recording(message, bot, bounds)
        except AudioRejected as exc:
            problem = exc.problem
    return after.claimed, recording, problem


async def on_recording(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    unit: UpdateUnit,
    user: User,
    bot: Bot,
    audio_store: AudioStore,
    event_update: Any,
    roles: Roles,
) -> None:
    filling = await form_in_progress(message, state, session)
    if filling is None:
        return
    form, project = filling
    if project.id not in roles.projects(Role.PROMOTER):  # removed from the project while filling the form
        await state.clear()
        await message.answer(_("intake-not-member").format(project=hd.quote(project.name)))
        return
    bounds, project_id, user_id = intake.bounds_for(project), project.id, user.id
    claimed, recording, problem = await _receive_outside_transaction(unit, message, bot, bounds, typing=True)
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
        or FormProgress.from_state(await state.get_data()) != form
    ):  # the form was cancelled or restarted while the recording downloaded
        await message.answer(_("intake-form-changed"))
        return
    outcome = await intake.submit_recording(
        session,
        audio_store,
        project=current,
        promoter=promoter,
        answers=form.answers,
        recording=recording,
        source_update_id=event_update.update_id,
    )
    await state.clear()  # with the SQL storage, in the same transaction as the contact
    if isinstance(outcome, intake.Resent):  # a resend, not a new contact
        await message.answer(_("intake-already-received").format(id=outcome.contact_id))
        return
    contact = outcome.contact
    # The receipt and the survey code go through the outbox in the contact's own transaction: once the
    # contact exists, they are delivered even if this process dies right after the commit. No reply
    # keyboard on the receipt: Telegram never lets a message that carries one be edited, and the receipt
    # is edited as the contact moves on (jobs/receipts.py). The menu stays from the earlier messages.
    await notify.queue_receipt(session, message.chat.id, contact.id, receipt_text(contact))
    contact.receipt_status = contact.status
    if (survey := outcome.survey) is not None:
        link = surveys.survey_link((await bot.me()).username or "", survey.token)
        caption = _("survey-qr-caption").format(link=link)
        await notify.queue_survey_code(session, message.chat.id, contact.id, link, caption)


async def on_not_a_recording(message: Message, session: AsyncSession, state: FSMContext) -> None:
    form = FormProgress.from_state(await state.get_data())
    project = await session.get(Project, form.project_id) if form else None
    bounds = intake.bounds_for(project) if project else intake.ENROLMENT_BOUNDS
    await message.answer(audio_problem(AudioProblem.NOT_AUDIO, bounds))


async def on_recording_out_of_turn(message: Message) -> None:
    await message.answer(_("intake-voice-out-of-turn"), reply_markup=menu_keyboard())


async def enrol_command(message: Message, state: FSMContext) -> None:
    await offer_enrolment(message, state)


async def on_enrolment(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    unit: UpdateUnit,
    user: User,
    bot: Bot,
    audio_store: AudioStore,
) -> None:
    user_id = user.id
    claimed, recording, problem = await _receive_outside_transaction(
        unit, message, bot, intake.ENROLMENT_BOUNDS
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
    await unit.keep_so_far()  # the voice sample stands even if the answer below fails
    await message.answer(_("enrol-saved"), reply_markup=menu_keyboard())
