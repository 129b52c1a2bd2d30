"""Moving stored voiceprints to another speaker encoder (`fieldcheck voice reembed`).

Voiceprints live per backend (`Voiceprint.backend`) and every search filters on it, so prints of two
encoders are never compared. After VOICE_BACKEND changes, the new backend's index starts empty: a repeated
customer or a resent recording from before the change would go unseen. This job analyses the stored
recordings again with the new encoder and stores their prints beside the old ones.

Resumable by construction: a recording is done when it has a print of the target backend, and each
recording's prints are written in one transaction, so a stopped run picks up where it left off. Enrolments
go first, so that each contact's promoter is recognised by their own enrolment in the new space. No flag is
raised and no contact is touched: these contacts were judged when they came in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.storage import AudioStore
from jobs.voice import add_voiceprints, load_wave, store_enrolment
from models import Audio, AudioKind, Contact, Project, Voiceprint
from services.voice.analysis import analyze, enrolment_embedding
from services.voice.encoder import SpeakerEncoder
from services.voice.flags import promoter_reference
from services.voice.probability import for_project

log = structlog.get_logger(__name__)


@dataclass
class ReembedReport:
    backend: str
    todo: int = 0  # recordings without a print of this backend when the run started
    done: int = 0
    missing: int = 0  # no longer in the audio store (purged): nothing to embed
    failed: int = 0
    seconds: float = 0.0


async def _todo(session: AsyncSession, backend: str) -> list[tuple[int, AudioKind]]:
    """Recordings with no print of `backend`, enrolments first, oldest first."""
    has_print = exists().where(Voiceprint.audio_id == Audio.id, Voiceprint.backend == backend)
    rows = await session.execute(
        select(Audio.id, Audio.kind)
        .where(~has_print, (Audio.kind == AudioKind.ENROLMENT) | Audio.contact_id.is_not(None))
        .order_by((Audio.kind == AudioKind.ENROLMENT).desc(), Audio.id)
    )
    return [(int(audio_id), AudioKind(kind)) for audio_id, kind in rows]


async def reembed(
    session_factory: async_sessionmaker[AsyncSession],
    store: AudioStore,
    encoder: SpeakerEncoder,
    *,
    limit: int | None = None,
    progress: Callable[[ReembedReport], None] | None = None,
    every: int = 25,
) -> ReembedReport:
    """Embed every stored recording that has no print of `encoder`'s backend yet (at most `limit`)."""
    started = time.perf_counter()
    report = ReembedReport(encoder.name)
    async with session_factory() as session:
        todo = await _todo(session, encoder.name)
    report.todo = len(todo)
    log.info("reembed_started", backend=encoder.name, recordings=len(todo))
    for audio_id, kind in todo[:limit]:
        try:
            stored = await _one(session_factory, store, encoder, audio_id, kind)
        except Exception:
            log.exception("reembed_failed", audio_id=audio_id, backend=encoder.name)
            report.failed += 1
        else:
            if stored:
                report.done += 1
            else:
                report.missing += 1
        handled = report.done + report.missing + report.failed
        if progress and (handled % every == 0 or handled == min(len(todo), limit or len(todo))):
            report.seconds = round(time.perf_counter() - started, 1)
            progress(report)
    report.seconds = round(time.perf_counter() - started, 1)
    log.info("reembed_finished", **vars(report))
    return report


async def _one(
    session_factory: async_sessionmaker[AsyncSession],
    store: AudioStore,
    encoder: SpeakerEncoder,
    audio_id: int,
    kind: AudioKind,
) -> bool:
    """One recording's prints in the new space, written in one transaction; False when its audio is gone."""
    async with session_factory() as session:
        audio = await session.get(Audio, audio_id)
        if audio is None:
            return False
        key, owner_id, contact_id = audio.storage_key, audio.owner_id, audio.contact_id
        contact = await session.get(Contact, contact_id) if contact_id else None
        reference = await promoter_reference(session, contact.promoter_id, encoder.name) if contact else None
        project = await session.get(Project, contact.project_id) if contact else None
        # the project's own refit where it has one, as the worker judges (it decides who is the customer)
        calibration = for_project(encoder.name, project.voice_thresholds if project else None)
    if not await asyncio.to_thread(store.exists, key):
        log.warning("reembed_audio_missing", audio_id=audio_id)
        return False
    wav = await load_wave(store, key)
    if kind == AudioKind.ENROLMENT:
        enrolled, seconds = await asyncio.to_thread(enrolment_embedding, encoder, wav)
        async with session_factory() as session, session.begin():
            await store_enrolment(session, encoder, audio_id, owner_id, enrolled=enrolled, seconds=seconds)
        return True
    assert contact is not None
    analysis = await asyncio.to_thread(analyze, wav, encoder, reference, calibration)
    async with session_factory() as session, session.begin():
        fresh = await session.get(Contact, contact.id)
        if fresh is None:  # deleted meanwhile
            return False
        add_voiceprints(session, audio_id=audio_id, contact=fresh, analysis=analysis, encoder=encoder)
    return True
