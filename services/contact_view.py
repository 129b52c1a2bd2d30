"""A contact as a reviewer's card and a manager's "Open contact" show it, read in one place.

The Telegram renderers (telegram_ui/cards.py, telegram_ui/alert_cards.py) take this view and return text:
they hold no session, so what they show is decided here and what it looks like there (issue #28 item 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import AnalysisTask, Assignment, Audio, AudioKind, Contact, Project, VoiceFlag
from models.payloads import ShortenedAudio
from services.speech.report import StoredReport, read_report


@dataclass(frozen=True)
class HeardVoice:
    role: str  # "promoter", "customer", or what the analysis named
    seconds: float


@dataclass(frozen=True)
class ContactView:
    contact: Contact
    project: Project
    flags: list[VoiceFlag]  # oldest first
    voices: list[HeardVoice]  # who the latest voice analysis heard, for how long: where to listen
    overlap_seconds: float  # how long two spoke at once
    # The speech report (transcript with speakers, script checks, the machine's verdict) where the project
    # has speech analysis on and the worker stored one (issue #25 item 5); None otherwise.
    speech: StoredReport | None = None
    # The recording with its long pauses cut, where the project turned `cut_pauses` on and the worker made
    # one (services.pauses): what the reviewer's card sends instead of the original.
    shortened: ShortenedAudio | None = None


async def contact_view(session: AsyncSession, contact: Contact) -> ContactView:
    project = await session.get(Project, contact.project_id)
    assert project is not None
    flags = list(
        await session.scalars(
            select(VoiceFlag).where(VoiceFlag.contact_id == contact.id).order_by(VoiceFlag.id)
        )
    )
    evidence = await session.scalar(
        select(AnalysisTask.evidence)
        .join(Audio, Audio.id == AnalysisTask.audio_id)
        .where(Audio.contact_id == contact.id, AnalysisTask.evidence.is_not(None))
        .order_by(AnalysisTask.id.desc())
        .limit(1)
    )
    speech = read_report(await speech_report(session, contact.id))
    if evidence is None:
        return ContactView(contact, project, flags, [], 0.0, speech)
    voices = [HeardVoice(v.role, v.seconds) for v in evidence.voice_seconds]
    shortened = evidence.shortened if (project.speech_settings or {}).get("cut_pauses") else None
    return ContactView(contact, project, flags, voices, evidence.overlap_seconds, speech, shortened)


async def speech_report(session: AsyncSession, contact_id: int) -> dict[str, Any] | None:
    """The speech report the voice worker stored for the contact's recording (the latest), if any."""
    return await session.scalar(
        select(AnalysisTask.speech)
        .join(Audio, Audio.id == AnalysisTask.audio_id)
        .where(Audio.contact_id == contact_id)
        .order_by(AnalysisTask.id.desc())
        .limit(1)
    )


async def card_view(session: AsyncSession, assignment: Assignment) -> ContactView:
    """The view of the contact an assignment's card is about."""
    contact = await session.get(Contact, assignment.contact_id)
    assert contact is not None
    return await contact_view(session, contact)


async def dialogue_audio(session: AsyncSession, contact_id: int) -> Audio | None:
    """The contact's recording (a card's voice note, "Open contact"'s too)."""
    return await session.scalar(  # type: ignore[no-any-return]
        select(Audio).where(Audio.contact_id == contact_id, Audio.kind == AudioKind.DIALOGUE).limit(1)
    )
