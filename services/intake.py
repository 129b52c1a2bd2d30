"""The promoter's side: contacts with their recordings, voice enrolment, statistics, disputes."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.storage import AudioStore, sha256_hex
from models import (
    AnalysisTask,
    Audio,
    AudioKind,
    Contact,
    ContactStatus,
    Dispute,
    NpsSurvey,
    Project,
    Review,
    User,
    Verdict,
    VoiceFlag,
)
from models.base import utcnow
from models.payloads import DuplicateRecording
from services import surveys
from services.audio import AudioBounds, AudioCheck, check_recording, encode_voice_note
from services.problems import ProblemError
from services.queue_policy import Ahead, move_ahead
from services.rates import share

# The same file from the same promoter this soon is a resend of one contact (a lost receipt, a double tap),
# answered with the contact it already is; later, or from someone else, it is a duplicate and is flagged.
RESEND_WINDOW = dt.timedelta(minutes=30)
ENROLMENT_BOUNDS = AudioBounds(min_seconds=10, max_seconds=60)
QUICK_PUT_BYTES = 1024 * 1024  # minutes of voice note; a bigger file is written from a worker thread


def bounds_for(project: Project) -> AudioBounds:
    return AudioBounds(project.min_audio_seconds, project.max_audio_seconds)


@dataclass(frozen=True)
class Recording:
    data: bytes
    check: AudioCheck
    suffix: str
    mime_type: str | None
    telegram_file_id: str | None
    telegram_file_unique_id: str | None
    # The recording as an Ogg/Opus voice note, when it came as an audio file or a document: stored and sent
    # (uploaded with sendVoice) instead of the original, whose file_id would re-send it unchanged. `data`
    # stays the original (its sha256 finds resends and duplicates, whatever the form).
    voice_note: bytes | None = None


def prepare_recording(
    data: bytes,
    bounds: AudioBounds,
    *,
    is_voice_note: bool,
    suffix: str,
    mime_type: str | None,
    telegram_file_id: str | None,
    telegram_file_unique_id: str | None,
) -> Recording:
    """Check a downloaded recording (services.audio.check_recording) and, unless Telegram already has it as
    a voice note, convert it to one once, here at intake. Blocking: call it from a worker thread."""
    check = check_recording(data, bounds)
    if is_voice_note:
        return Recording(data, check, suffix, mime_type, telegram_file_id, telegram_file_unique_id)
    voice = encode_voice_note(check.segment)
    # No file_id: Telegram's is for the audio file or document; the voice note is uploaded when first sent.
    return Recording(data, check, ".ogg", "audio/ogg", None, telegram_file_unique_id, voice_note=voice)


async def _store_audio(
    session: AsyncSession,
    store: AudioStore,
    owner: User,
    recording: Recording,
    *,
    kind: AudioKind,
    contact_id: int | None,
) -> Audio:
    stored = recording.voice_note if recording.voice_note is not None else recording.data
    if store.put_is_quick and len(stored) <= QUICK_PUT_BYTES:
        key = store.put(stored, recording.suffix)
    else:
        key = await asyncio.to_thread(store.put, stored, recording.suffix)
    audio = Audio(
        contact_id=contact_id,
        owner_id=owner.id,
        kind=kind,
        storage_key=key,
        sha256=sha256_hex(recording.data),  # of the original as received: resends and duplicates match it
        duration_seconds=round(recording.check.duration_seconds, 3),
        size_bytes=len(stored),
        mime_type=recording.mime_type,
        telegram_file_id=recording.telegram_file_id,
        telegram_file_unique_id=recording.telegram_file_unique_id,
    )
    session.add(audio)
    await session.flush()
    session.add(AnalysisTask(audio_id=audio.id))
    return audio


def _same_recording(project: Project, digest: str) -> ColumnElement[bool]:
    """The project's contacts whose dialogue recording has this hash (of the file as received): a
    duplicate of another contact, or the promoter's own resend."""
    return and_(Audio.sha256 == digest, Audio.kind == AudioKind.DIALOGUE, Contact.project_id == project.id)


async def create_contact(
    session: AsyncSession,
    store: AudioStore,
    *,
    project: Project,
    promoter: User,
    answers: dict[str, Any],
    recording: Recording,
    source_update_id: int | None,
    now: dt.datetime | None = None,
) -> tuple[Contact, list[VoiceFlag]]:
    """Contact, audio, analysis task and customer survey in the caller's transaction; the caller commits before replying."""
    now = now or utcnow()
    contact = Contact(
        project_id=project.id,
        promoter_id=promoter.id,
        form_answers=answers,
        source_update_id=source_update_id,
        submitted_at=now,
    )
    session.add(contact)
    await session.flush()
    audio = await _store_audio(
        session, store, promoter, recording, kind=AudioKind.DIALOGUE, contact_id=contact.id
    )
    flags = []
    earlier = list(
        await session.scalars(
            select(Audio.contact_id)
            .join(Contact, Contact.id == Audio.contact_id)
            .where(_same_recording(project, audio.sha256), Contact.id != contact.id)
            .order_by(Audio.contact_id)
        )
    )
    if earlier:
        flag = VoiceFlag(
            contact_id=contact.id,
            score=1.0,
            matched_contact_ids=[c for c in earlier if c is not None],
            details=DuplicateRecording(method="sha256"),
        )
        session.add(flag)
        flags.append(flag)
        move_ahead(contact, Ahead.DUPLICATE_RECORDING)
    contact.transition_to(ContactStatus.QUEUED)
    contact.queued_at = now
    await surveys.create_survey(session, project, contact, now)
    await session.flush()
    return contact, flags


async def recent_resend(
    session: AsyncSession, promoter: User, project: Project, data: bytes, now: dt.datetime | None = None
) -> Contact | None:
    """The contact this very recording already made for this promoter within RESEND_WINDOW, if any."""
    now = now or utcnow()
    digest = await asyncio.to_thread(sha256_hex, data)
    contact: Contact | None = await session.scalar(
        select(Contact)
        .join(Audio, Audio.contact_id == Contact.id)
        .where(
            _same_recording(project, digest),
            Contact.promoter_id == promoter.id,
            Contact.submitted_at >= now - RESEND_WINDOW,
        )
        .order_by(Contact.id.desc())
        .limit(1)
    )
    return contact


async def survey_of(session: AsyncSession, contact: Contact) -> NpsSurvey | None:
    survey: NpsSurvey | None = await session.scalar(
        select(NpsSurvey).where(NpsSurvey.contact_id == contact.id)
    )
    return survey


@dataclass(frozen=True)
class Submitted:
    """A new contact, queued for review; its customer survey when the project surveys customers."""

    contact: Contact
    flags: list[VoiceFlag]
    survey: NpsSurvey | None


@dataclass(frozen=True)
class Resent:
    """The very recording this promoter sent within RESEND_WINDOW (a receipt that did not arrive, a double
    tap): nothing new is stored, and the promoter is told the contact it already made."""

    contact_id: int


async def submit_recording(
    session: AsyncSession,
    store: AudioStore,
    *,
    project: Project,
    promoter: User,
    answers: dict[str, Any],
    recording: Recording,
    source_update_id: int | None,
    now: dt.datetime | None = None,
) -> Submitted | Resent:
    """The promoter's use case for a finished form and its recording, in the caller's transaction (the
    update's unit commits before any reply)."""
    earlier = await recent_resend(session, promoter, project, recording.data, now)
    if earlier is not None:
        return Resent(earlier.id)
    contact, flags = await create_contact(
        session,
        store,
        project=project,
        promoter=promoter,
        answers=answers,
        recording=recording,
        source_update_id=source_update_id,
        now=now,
    )
    return Submitted(contact, flags, await survey_of(session, contact))


async def save_enrolment(session: AsyncSession, store: AudioStore, user: User, recording: Recording) -> Audio:
    """The promoter's reference voice; the newest one is the one speaker checks use."""
    return await _store_audio(session, store, user, recording, kind=AudioKind.ENROLMENT, contact_id=None)


async def has_enrolment(session: AsyncSession, user: User) -> bool:
    found = await session.scalar(
        select(Audio.id).where(Audio.owner_id == user.id, Audio.kind == AudioKind.ENROLMENT).limit(1)
    )
    return found is not None


@dataclass(frozen=True)
class Feedback:
    contact_id: int
    score: float
    verdict: Verdict
    comment: str | None


@dataclass(frozen=True)
class PromoterStats:
    today: int
    week: int
    reviewed: int
    approved: int
    average_score: float | None
    last_feedback: Feedback | None
    disputable: list[int]

    @property
    def approval_rate(self) -> float | None:
        return share(self.approved, self.reviewed)


def _day_start(now: dt.datetime, timezone: str) -> dt.datetime:
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


async def promoter_stats(
    session: AsyncSession, user: User, project: Project, *, now: dt.datetime | None = None
) -> PromoterStats:
    now = now or utcnow()
    today_start = _day_start(now, project.timezone)
    week_start = today_start - dt.timedelta(days=today_start.astimezone(ZoneInfo(project.timezone)).weekday())
    mine = (Contact.promoter_id == user.id, Contact.project_id == project.id)

    async def count(*where: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(Contact).where(*mine, *where)) or 0)

    reviewed_states = (ContactStatus.REVIEWED, ContactStatus.DISPUTED, ContactStatus.FINAL)
    reviewed = await count(Contact.status.in_(reviewed_states), Contact.final_verdict.is_not(None))
    approved = await count(Contact.status.in_(reviewed_states), Contact.final_verdict == Verdict.APPROVE)
    average = await session.scalar(
        select(func.avg(Contact.score)).where(
            *mine, Contact.status.in_(reviewed_states), Contact.score.is_not(None)
        )
    )
    last = (
        await session.execute(
            select(Review.contact_id, Review.score, Review.verdict, Review.comment)
            .join(Contact, Contact.id == Review.contact_id)
            .where(*mine, Review.undone_at.is_(None))
            .order_by(Review.created_at.desc(), Review.id.desc())
            .limit(1)
        )
    ).first()
    window_start = now - dt.timedelta(hours=project.dispute_window_hours)
    disputable = list(
        await session.scalars(
            select(Contact.id)
            .where(*mine, Contact.status == ContactStatus.REVIEWED, Contact.reviewed_at >= window_start)
            .where(~select(Dispute.id).where(Dispute.contact_id == Contact.id).exists())
            .order_by(Contact.reviewed_at.desc())
            .limit(5)
        )
    )
    return PromoterStats(
        today=await count(Contact.submitted_at >= today_start),
        week=await count(Contact.submitted_at >= week_start),
        reviewed=reviewed,
        approved=approved,
        average_score=float(average) if average is not None else None,
        last_feedback=Feedback(last[0], last[1], last[2], last[3]) if last else None,
        disputable=disputable,
    )


class DisputeProblem(StrEnum):
    NOT_YOURS = "not_yours"
    NOT_REVIEWED = "not_reviewed"
    WINDOW_CLOSED = "window_closed"
    ALREADY = "already"
    EMPTY_REASON = "empty_reason"


class DisputeError(ProblemError[DisputeProblem]):
    """A promoter's dispute refused before it is opened."""


async def check_disputable(
    session: AsyncSession, user: User, contact_id: int, *, now: dt.datetime | None = None
) -> Contact:
    now = now or utcnow()
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.promoter_id != user.id:
        raise DisputeError(DisputeProblem.NOT_YOURS)
    if await session.scalar(select(Dispute.id).where(Dispute.contact_id == contact_id)) is not None:
        raise DisputeError(DisputeProblem.ALREADY)
    if contact.status != ContactStatus.REVIEWED or contact.reviewed_at is None:
        raise DisputeError(DisputeProblem.NOT_REVIEWED)
    project = await session.get(Project, contact.project_id)
    assert project is not None
    if now > contact.reviewed_at + dt.timedelta(hours=project.dispute_window_hours):
        raise DisputeError(DisputeProblem.WINDOW_CLOSED)
    return contact


async def open_dispute(
    session: AsyncSession, user: User, contact_id: int, reason: str, *, now: dt.datetime | None = None
) -> Dispute:
    """Once per contact, inside the project's window; the contact goes to the re-review queue."""
    reason = reason.strip()
    if not reason:
        raise DisputeError(DisputeProblem.EMPTY_REASON)
    contact = await check_disputable(session, user, contact_id, now=now)
    dispute = Dispute(contact_id=contact.id, promoter_id=user.id, reason=reason[:2000])
    session.add(dispute)
    contact.transition_to(ContactStatus.DISPUTED)
    await session.flush()
    return dispute
