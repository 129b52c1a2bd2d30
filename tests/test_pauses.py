"""Reviewers get the recording with its long pauses cut where the project asks (issue #25 item 5): real
voice notes with a long wait in them, the real silero-vad and voice worker, the card sent by the real bot
through aiogram to the Bot API stand-in, and the shortened note erased with its recording."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.storage import LocalAudioStore
from jobs import housekeeping
from jobs import review as review_jobs
from jobs import voice as voice_jobs
from models import AnalysisTask, Audio, Contact, Project, Role
from models.base import utcnow
from sandbox import demo_audio
from services import pauses
from services.audio import SAMPLE_RATE, decode, encode_voice_note, from_float
from services.contact_view import contact_view
from services.voice.analysis import speech_spans, to_float
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.helpers import cards_of, join, seed_contacts, seed_project, text

WAIT = 5.0  # seconds of the promoter waiting in the middle of the note
TAIL = 2.0  # seconds of room noise after the last word


def waiting_note(folder: Path) -> np.ndarray:
    """Two spoken sentences (espeak-ng through Opus, as a phone sends them) around a five-second wait of
    faint room noise, and two more seconds of it at the end: 16 kHz mono float."""
    first = to_float(decode(demo_audio.speech(folder / "first.ogg").read_bytes()))
    second = to_float(decode(demo_audio.speech(folder / "second.ogg", voice="en+f3", speed=150).read_bytes()))
    noise = np.random.default_rng(7)

    def hush(seconds: float) -> np.ndarray:
        return (noise.standard_normal(int(seconds * SAMPLE_RATE)) * 0.002).astype(np.float32)

    return np.concatenate([first, hush(WAIT), second, hush(TAIL)])


def as_voice_note(wav: np.ndarray) -> bytes:
    return encode_voice_note(from_float(wav))


def seconds_of(voice_note: bytes) -> float:
    return len(to_float(decode(voice_note))) / SAMPLE_RATE


def test_the_long_wait_is_cut_and_every_word_kept(tmp_path: Path) -> None:
    wav = to_float(decode(as_voice_note(waiting_note(tmp_path))))
    turns = [(start, end, 0) for start, end in speech_spans(wav)]  # silero-vad, as the worker's analysis
    short = pauses.shorten_pauses(wav, turns)
    saved = (len(wav) - len(short)) / SAMPLE_RATE
    # The wait and the tail go but for the silence kept where they were cut (at most KEPT_PAUSE each).
    assert saved >= WAIT + TAIL - 2 * pauses.KEPT_PAUSE - 0.5, saved
    # Every word stays: the speech's energy is all there (the cut noise had almost none).
    assert float(np.sum(short**2)) >= 0.97 * float(np.sum(wav**2))
    note = pauses.shortened_note(wav, turns)
    assert note is not None and note.voice_note[:4] == b"OggS"
    assert note.original_seconds == round(len(wav) / SAMPLE_RATE, 1)
    assert abs(seconds_of(note.voice_note) - note.seconds) < 0.1


def test_a_note_without_long_pauses_is_left_as_it_is(audio_dir: Path) -> None:
    wav = to_float(decode((audio_dir / "dialogue.ogg").read_bytes()))
    turns = [(start, end, 0) for start, end in speech_spans(wav)]
    assert pauses.shortened_note(wav, turns) is None  # nothing worth a second file
    assert len(pauses.shorten_pauses(wav, [])) == len(wav)  # no speech heard: nothing cut


def test_kept_ranges() -> None:
    # 1 s of silence, speech 1-3 s and 3.5-5 s (a 0.5 s pause, kept whole), a 4 s pause, speech 9-10 s,
    # then 3 s of silence: the silences before, between and after keep half a KEPT_PAUSE each side.
    spans = [(1.0, 3.0), (3.5, 5.0), (9.0, 10.0)]
    half = pauses.KEPT_PAUSE / 2
    assert pauses.kept_ranges(spans, 13.0) == [(1.0 - half, 5.0 + half), (9.0 - half, 10.0 + half)]
    # Speech from the very start to the very end: nothing to cut.
    assert pauses.kept_ranges([(0.0, 4.0), (4.2, 6.0)], 6.0) == [(0.0, 6.0)]
    assert pauses.merged_turns([(2.0, 3.0, 1), (0.5, 2.5, 0), (5.0, 9.0, 0)], 7.0) == [(0.5, 3.0), (5.0, 7.0)]


@pytest.mark.timeout(300)
async def test_the_reviewer_hears_the_note_without_its_long_wait_where_the_project_asks(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """The worker keeps the shortened note beside the original; the card's voice note is that one, its
    caption saying how much shorter; the manager's view still has the original; with the option off the
    card carries the original; erasing the recording erases its shortened note too."""
    pytest.importorskip("resemblyzer")
    from services.voice.encoder import load_encoder

    project = await seed_project(sessions, speech_settings={"cut_pauses": True}, retention_days=30)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3501, "Anna")
    await join(tg, sessions, project, Role.PROMOTER, 2501, "Pavel")
    note = tmp_path / "note.ogg"
    note.write_bytes(as_voice_note(waiting_note(tmp_path)))
    store = LocalAudioStore(app.settings.storage_root)
    [contact_id] = await seed_contacts(sessions, tg, project, 2501, 1, note, app.settings.storage_root)
    assert await voice_jobs.run_once(sessions, store, load_encoder("resemblyzer"), "test") is not None
    async with sessions() as session:
        audio = await session.scalar(select(Audio).where(Audio.contact_id == contact_id))
        assert audio is not None
        evidence = await session.scalar(
            select(AnalysisTask.evidence).where(AnalysisTask.audio_id == audio.id)
        )
    assert evidence is not None and evidence.shortened is not None
    shortened = evidence.shortened
    assert shortened.original_seconds - shortened.seconds >= WAIT + TAIL - 2 * pauses.KEPT_PAUSE - 0.5
    assert store.exists(shortened.key) and store.exists(audio.storage_key)

    await review_jobs.dispatch(app.session_factory, app.i18n)
    await tg.wait_until(lambda: len(cards_of(anna)) == 1, timeout=20)
    [voice] = [m for m in anna.bot_messages() if "voice" in m]
    assert message_text(voice) == text(
        "card-voice-pauses-cut",
        id=contact_id,
        seconds=f"{shortened.seconds:.0f}",
        original=f"{shortened.original_seconds:.0f}",
    )
    heard = tg.world.files[voice["voice"]["file_id"]].path.read_bytes()
    assert abs(seconds_of(heard) - shortened.seconds) < 0.1  # the shortened note, uploaded
    assert seconds_of(store.get(audio.storage_key)) > shortened.seconds + WAIT  # the original is untouched

    async with sessions() as session, session.begin():
        stored = await session.get(Project, project.id)
        contact = await session.get(Contact, contact_id)
        assert stored is not None and contact is not None
        assert (await contact_view(session, contact)).shortened == shortened
        stored.speech_settings = {"cut_pauses": False}
        await session.flush()
        assert (await contact_view(session, contact)).shortened is None  # off: the card sends the original

    erased = await housekeeping.purge_personal_data(sessions, store, now=utcnow() + dt.timedelta(days=31))
    assert erased.recordings == 1 and erased.files == 2
    assert not store.exists(shortened.key) and not store.exists(audio.storage_key)
