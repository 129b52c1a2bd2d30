"""The voice worker: claims analysis tasks from the database, analyses off the event loop, stores results.

Run as its own process (`fieldcheck voice worker`), as many as the machine allows: on PostgreSQL tasks are
claimed with SKIP LOCKED; a task left `running` by a crashed worker is claimed again after STALE.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.storage import AudioStore
from models import (
    AnalysisState,
    AnalysisTask,
    Audio,
    AudioKind,
    Contact,
    Membership,
    Project,
    Role,
    VoiceFlag,
    Voiceprint,
    VoiceRole,
)
from models.base import utcnow
from models.payloads import AnalysisEvidence, RepeatedCustomer, ShortenedAudio, VoiceSeconds
from services.audio import decode
from services.pauses import SUFFIX as PAUSES_CUT_SUFFIX
from services.pauses import shortened_note
from services.queue_policy import Ahead, move_ahead
from services.speech.pipeline import analyse
from services.speech.script import rules_from
from services.speech.verdict import VerdictRules, decide
from services.voice.analysis import Analysis, analyze, enrolment_embedding, to_float
from services.voice.encoder import SpeakerEncoder
from services.voice.flags import VoiceRules, promoter_reference, raise_flags
from services.voice.index import VoiceprintCatalog
from services.voice.probability import Calibration, for_project

if TYPE_CHECKING:
    from services.speech.pipeline import SpeechReport
    from services.speech.recognizer import Recognizer

log = structlog.get_logger(__name__)
STALE = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 3
MAX_SEGMENTS = 400  # turns kept with the analysis


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def claim(
    session_factory: async_sessionmaker[AsyncSession],
    worker: str,
    now: dt.datetime,
    stale: dt.timedelta = STALE,
) -> int | None:
    async with session_factory() as session, session.begin():
        query = (
            select(AnalysisTask)
            .where(
                or_(
                    AnalysisTask.state == AnalysisState.PENDING,
                    (AnalysisTask.state == AnalysisState.RUNNING) & (AnalysisTask.claimed_at < now - stale),
                )
            )
            .order_by(AnalysisTask.id)
            .limit(1)
        )
        task = await session.scalar(query.with_for_update(skip_locked=True))  # SQLite: no FOR UPDATE
        if task is None:
            return None
        task.state, task.claimed_by, task.claimed_at = AnalysisState.RUNNING, worker, now
        task.attempts += 1
        return task.id


def _blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


async def process(
    session_factory: async_sessionmaker[AsyncSession],
    store: AudioStore,
    encoder: SpeakerEncoder,
    task_id: int,
    now: dt.datetime,
    *,
    catalog: VoiceprintCatalog | None = None,
    worker: str | None = None,
    recognizer: Recognizer | None = None,
) -> None:
    """Read what the task needs, analyse with no transaction open (seconds of CPU must not hold a database
    snapshot or connection), then write the results in one transaction, if the task is still `worker`'s
    (raises Superseded when another worker has taken it over meanwhile). With a `recognizer`, contacts of
    projects that turned speech analysis on are also transcribed and checked (services.speech)."""
    async with session_factory() as session:
        task = await session.get(AnalysisTask, task_id)
        assert task is not None
        mine = (worker or task.claimed_by, task.attempts)
        audio = await session.get(Audio, task.audio_id)
        assert audio is not None
        contact = await session.get(Contact, audio.contact_id) if audio.contact_id else None
        reference = old_enrolment = None
        seconds = 0.0
        project_settings, speech_settings = None, {}
        if contact is not None:
            project_row = await session.get(Project, contact.project_id)
            project_settings, speech_settings = (
                (project_row.voice_thresholds, dict(project_row.speech_settings or {}))
                if project_row
                else (None, {})
            )
            reference = await promoter_reference(session, contact.promoter_id, encoder.name)
            if reference is None:  # after a backend change: embed the enrolment in this backend's space
                old_enrolment = await _latest_enrolment(session, contact.promoter_id)
        audio_id, owner_id, storage_key, kind = audio.id, audio.owner_id, audio.storage_key, audio.kind
    wav = await load_wave(store, storage_key)
    if kind == AudioKind.ENROLMENT:
        enrolled, seconds = await asyncio.to_thread(enrolment_embedding, encoder, wav)
        async with session_factory() as session, session.begin():
            await _still_mine(session, task_id, mine)
            await store_enrolment(session, encoder, audio_id, owner_id, enrolled=enrolled, seconds=seconds)
            await _finish(session, task_id, now)
        return
    assert contact is not None
    if old_enrolment is not None:
        reference, seconds = await asyncio.to_thread(
            enrolment_embedding, encoder, await load_wave(store, old_enrolment[1])
        )
        log.info("enrolment_embedded_for_backend", user_id=contact.promoter_id, backend=encoder.name)
    calibration = for_project(encoder.name, project_settings)
    analysis, speech, shortened = await asyncio.to_thread(
        lambda: _analyse(
            wav, encoder, reference, calibration, recognizer=recognizer, settings=speech_settings, store=store
        )
    )

    async with session_factory() as session, session.begin():
        await _still_mine(session, task_id, mine)
        if old_enrolment is not None and reference is not None:
            await store_enrolment(
                session, encoder, old_enrolment[0], contact.promoter_id, enrolled=reference, seconds=seconds
            )
        contact = await session.get(Contact, contact.id)
        assert contact is not None
        project = await session.get(Project, contact.project_id)
        assert project is not None
        rules = VoiceRules.for_project(project, encoder)
        flags = await raise_flags(
            session, contact, analysis, rules, backend=encoder.name, now=now, catalog=catalog
        )
        add_voiceprints(session, audio_id=audio_id, contact=contact, analysis=analysis, encoder=encoder)
        for flag in flags:
            session.add(
                VoiceFlag(
                    contact_id=contact.id,
                    score=flag.score,
                    matched_contact_ids=flag.matched_contact_ids,
                    details=flag.details,
                    cluster_key=flag.details.cluster if isinstance(flag.details, RepeatedCustomer) else None,
                )
            )
        if flags:
            move_ahead(contact, Ahead.VOICE_FLAGS)
        task_row = await session.get(AnalysisTask, task_id)
        assert task_row is not None
        task_row.evidence, task_row.speech = (
            analysis_evidence(analysis, encoder.name, reference is not None, shortened),
            speech_record(speech, flags, speech_settings),
        )
        await _finish(session, task_id, now)
    log.info(
        "contact_analysed",
        contact_id=contact.id,
        voices=len(analysis.voices),
        speech_seconds=round(analysis.speech_seconds, 1),
        flags=[f.kind.value for f in flags],
    )


def _analyse(
    wav: np.ndarray,
    encoder: SpeakerEncoder,
    reference: np.ndarray | None,
    calibration: Calibration | None,
    *,
    recognizer: Recognizer | None,
    settings: dict[str, Any],
    store: AudioStore | None = None,
) -> tuple[Analysis, SpeechReport | None, ShortenedAudio | None]:
    """Diarisation, then speech on its turns and the pauses cut by them: one thread hop for the CPU work
    of a note."""
    analysis = analyze(wav, encoder, reference, calibration)
    speech = listen(recognizer, wav, analysis, settings)
    return analysis, speech, shorten(store, wav, analysis, settings)


def shorten(
    store: AudioStore | None, wav: np.ndarray, analysis: Analysis, settings: dict[str, Any]
) -> ShortenedAudio | None:
    """The note with its long pauses cut, stored before the results' transaction, where the project turned
    `cut_pauses` on. A failure costs only the shortening: the card then carries the original (logged)."""
    if store is None or not settings.get("cut_pauses"):
        return None
    try:
        note = shortened_note(wav, analysis.segments)
        if note is None:
            return None
        key = store.put(note.voice_note, PAUSES_CUT_SUFFIX)
    except Exception:
        log.exception("pauses_cut_failed")
        return None
    return ShortenedAudio(key=key, seconds=note.seconds, original_seconds=note.original_seconds)


def listen(
    recognizer: Recognizer | None, wav: np.ndarray, analysis: Analysis, settings: dict[str, Any]
) -> SpeechReport | None:
    """Recognition and the script checks after the diarisation, in the worker's thread, where the project
    turned them on (`speech_settings.enabled`). A failure here leaves the voice analysis standing (logged;
    the contact goes to a person as before)."""
    if recognizer is None or not settings.get("enabled"):
        return None
    try:
        rules = rules_from(settings.get("script"), settings.get("products") or [])
        roles = [voice.role for voice in analysis.voices]
        return analyse(wav, recognizer, rules, segments=analysis.segments, roles=roles)
    except Exception:
        log.exception("speech_analysis_failed")
        return None


def speech_record(
    report: SpeechReport | None, flags: list[Any], settings: dict[str, Any]
) -> dict[str, Any] | None:
    """What is stored on the task: the report with its verdict decided now that every voice flag, those
    against other contacts included, is known."""
    if report is None:
        return None

    report.verdict = decide(
        report.checks, report.transcript.confidence, flags, VerdictRules.from_dict(settings.get("verdict"))
    )
    record = report.as_dict()
    record["segments"] = record["segments"][:MAX_SEGMENTS]
    return record


def analysis_evidence(
    analysis: Analysis, backend: str, enrolled: bool, shortened: ShortenedAudio | None = None
) -> AnalysisEvidence:
    return AnalysisEvidence(
        shortened=shortened,
        backend=backend,
        enrolled=enrolled,
        features=analysis.evidence,
        p_one_voice=analysis.p_one_voice,
        p_self_recorded=analysis.p_self_recorded,
        calibrated=analysis.calibrated,
        speech_seconds=analysis.speech_seconds,
        voices=len(analysis.voices),
        # who spoke when, for a reviewer's timeline (capped: a long note's turns would bloat the row)
        voice_seconds=[
            VoiceSeconds(role=voice.role, seconds=voice.speech_seconds) for voice in analysis.voices
        ],
        overlap_seconds=analysis.overlap_seconds,
        segments=[
            (start, end, analysis.voices[index].role)
            for start, end, index in analysis.segments[:MAX_SEGMENTS]
        ],
    )


async def load_wave(store: AudioStore, storage_key: str) -> np.ndarray:
    return to_float(await asyncio.to_thread(decode, await asyncio.to_thread(store.get, storage_key)))


async def store_enrolment(
    session: AsyncSession,
    encoder: SpeakerEncoder,
    audio_id: int,
    user_id: int,
    *,
    enrolled: np.ndarray,
    seconds: float,
) -> None:
    """One reference voiceprint for each project the promoter works in."""
    for project_id in await _promoter_projects(session, user_id):
        session.add(
            Voiceprint(
                project_id=project_id,
                audio_id=audio_id,
                user_id=user_id,
                role=VoiceRole.PROMOTER,
                backend=encoder.name,
                dim=encoder.dim,
                vector=_blob(enrolled),
                speech_seconds=seconds,
            )
        )


async def _latest_enrolment(session: AsyncSession, user_id: int) -> tuple[int, str] | None:
    """(audio id, storage key) of the promoter's newest enrolment recording."""
    row = (
        await session.execute(
            select(Audio.id, Audio.storage_key)
            .where(Audio.owner_id == user_id, Audio.kind == AudioKind.ENROLMENT)
            .order_by(Audio.id.desc())
            .limit(1)
        )
    ).first()
    return (int(row[0]), str(row[1])) if row else None


async def _promoter_projects(session: AsyncSession, user_id: int) -> list[int]:
    return list(
        await session.scalars(
            select(Membership.project_id).where(
                Membership.user_id == user_id, Membership.role == Role.PROMOTER
            )
        )
    )


def add_voiceprints(
    session: AsyncSession, *, audio_id: int, contact: Contact, analysis: Analysis, encoder: SpeakerEncoder
) -> None:
    """One voiceprint per voice found (its role as the diariser saw it) and one of the whole recording,
    in the contact's project."""

    def voiceprint(role: VoiceRole, vector: np.ndarray, seconds: float, user_id: int | None) -> Voiceprint:
        return Voiceprint(
            project_id=contact.project_id,
            audio_id=audio_id,
            contact_id=contact.id,
            user_id=user_id,
            role=role,
            backend=encoder.name,
            dim=encoder.dim,
            vector=_blob(vector),
            speech_seconds=seconds,
        )

    for voice in analysis.voices:
        role = VoiceRole.PROMOTER if voice.role == "promoter" else VoiceRole.CUSTOMER
        promoter_id = contact.promoter_id if role == VoiceRole.PROMOTER else None
        session.add(voiceprint(role, voice.embedding, voice.speech_seconds, promoter_id))
    if analysis.whole is not None:
        session.add(voiceprint(VoiceRole.UNKNOWN, analysis.whole, analysis.speech_seconds, None))


class Superseded(Exception):
    """Another worker took the task over (this one looked dead): its results are the ones that count."""


async def _still_mine(session: AsyncSession, task_id: int, mine: tuple[str | None, int]) -> None:
    """Fencing: the results are written only under the claim they were computed for (the row locked on
    PostgreSQL; SQLite's writer lock serialises the rest)."""
    query = select(AnalysisTask.claimed_by, AnalysisTask.attempts, AnalysisTask.state).where(
        AnalysisTask.id == task_id
    )
    row = (await session.execute(query.with_for_update())).one()  # SQLite renders no FOR UPDATE
    if (row.claimed_by, row.attempts) != mine or row.state != AnalysisState.RUNNING:
        raise Superseded(task_id)


async def _heartbeat(
    session_factory: async_sessionmaker[AsyncSession], task_id: int, worker: str, every: float
) -> None:
    """While this worker analyses, its claim stays fresh: only a dead worker's task is ever taken over
    (a slow analysis on a busy machine used to be taken over and done twice)."""
    while True:
        await asyncio.sleep(every)
        async with session_factory() as session, session.begin():
            await session.execute(
                update(AnalysisTask)
                .where(
                    AnalysisTask.id == task_id,
                    AnalysisTask.claimed_by == worker,
                    AnalysisTask.state == AnalysisState.RUNNING,
                )
                .values(claimed_at=utcnow())
            )


async def _finish(session: AsyncSession, task_id: int, now: dt.datetime) -> None:
    task = await session.get(AnalysisTask, task_id)
    assert task is not None
    task.state, task.finished_at, task.error = AnalysisState.DONE, now, None


async def run_once(
    session_factory: async_sessionmaker[AsyncSession],
    store: AudioStore,
    encoder: SpeakerEncoder,
    worker: str | None = None,
    now: dt.datetime | None = None,
    *,
    catalog: VoiceprintCatalog | None = None,
    stale: dt.timedelta = STALE,
    recognizer: Recognizer | None = None,
) -> int | None:
    """Claim and process one task; returns its id, or None when there is nothing to do."""
    now = now or utcnow()
    worker = worker or worker_name()
    task_id = await claim(session_factory, worker, now, stale)
    if task_id is None:
        return None
    beat = asyncio.create_task(_heartbeat(session_factory, task_id, worker, stale.total_seconds() / 3))
    try:
        await process(
            session_factory,
            store,
            encoder,
            task_id,
            now,
            catalog=catalog,
            worker=worker,
            recognizer=recognizer,
        )
    except Superseded:
        log.warning("analysis_superseded", task_id=task_id, worker=worker)
    except Exception as exc:
        log.exception("analysis_failed", task_id=task_id)
        async with session_factory() as session, session.begin():
            task = await session.get(AnalysisTask, task_id)
            assert task is not None
            if task.claimed_by == worker:  # not if another worker has taken it over meanwhile
                task.state = AnalysisState.FAILED if task.attempts >= MAX_ATTEMPTS else AnalysisState.PENDING
                task.error = repr(exc)[:2000]
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await beat
    return task_id


async def run_worker(
    session_factory: async_sessionmaker[AsyncSession],
    store: AudioStore,
    encoder: SpeakerEncoder,
    stop: asyncio.Event,
    *,
    idle: float = 1.0,
    stale: dt.timedelta = STALE,
    recognizer: Recognizer | None = None,
) -> None:
    worker = worker_name()
    catalog = VoiceprintCatalog()  # kept for the worker's life, refreshed incrementally
    log.info("voice_worker_started", worker=worker, backend=encoder.name)
    done = 0
    while not stop.is_set():
        if (
            await run_once(
                session_factory, store, encoder, worker, catalog=catalog, stale=stale, recognizer=recognizer
            )
            is None
        ):
            try:
                await asyncio.wait_for(stop.wait(), idle)
            except TimeoutError:
                continue
        else:
            done += 1
            if done % 100 == 0:
                log.info("voice_worker_progress", analysed=done)
