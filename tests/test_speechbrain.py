"""The SpeechBrain ECAPA backend, loaded the production way (EncoderClassifier.from_hparams on a local
directory) from a checkpoint these tests save themselves in SpeechBrain's pretrained layout: the hub's
weights cannot be fetched here, so the weights are random, and only what holds for any weights is checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.payloads import SelfRecording
from sandbox import demo_audio
from services.audio import decode
from services.voice.analysis import speech_mask, to_float
from services.voice.encoder import (
    ECAPA_FILES,
    SAMPLE_RATE,
    SpeechBrainEncoder,
    fetch_speechbrain_model,
    load_encoder,
)
from tests.helpers import run_cli
from voicelab.random_checkpoint import hyperparams, write_random_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    directory = tmp_path_factory.mktemp("ecapa")  # small channels keep it quick; the layout is the same
    return directory, write_random_checkpoint(directory, channels=256, attention=64, classes=16)


@pytest.fixture(scope="module")
def offline() -> object:
    """Any attempt to reach the hub fails loudly instead of downloading."""
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    if before is None:
        os.environ.pop("HF_HUB_OFFLINE")
    else:
        os.environ["HF_HUB_OFFLINE"] = before


@pytest.fixture(scope="module")
def encoder(checkpoint: tuple[Path, dict[str, torch.Tensor]], offline: object) -> SpeechBrainEncoder:
    loaded = load_encoder("auto", checkpoint[0])
    assert isinstance(loaded, SpeechBrainEncoder)
    return loaded


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Two synthetic voices with a 3 s pause between them, decoded like any voice note."""
    folder = tmp_path_factory.mktemp("dialogue")
    first = to_float(decode(demo_audio.speech(folder / "a.ogg", voice="en", pitch=40).read_bytes()))
    second = to_float(decode(demo_audio.speech(folder / "b.ogg", voice="en+f3", pitch=70).read_bytes()))
    return np.concatenate([first, np.zeros(3 * SAMPLE_RATE, dtype=np.float32), second])


def test_checkpoint_loads_from_the_local_directory(
    checkpoint: tuple[Path, dict[str, torch.Tensor]], encoder: SpeechBrainEncoder
) -> None:
    _, saved = checkpoint
    loaded = encoder._model.mods.embedding_model.state_dict()
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[name], saved[name]) for name in saved), "weights are not the saved ones"
    assert (encoder.name, encoder.dim) == ("speechbrain", 192)


def test_auto_falls_back_when_the_model_is_incomplete(tmp_path: Path) -> None:
    """Without a complete ECAPA model, auto takes Resemblyzer (the best measured of the offline backends)."""
    assert load_encoder("auto", tmp_path / "nothing").name == "resemblyzer"
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "hyperparams.yaml").write_text(hyperparams())
    assert load_encoder("auto", tmp_path / "partial").name == "resemblyzer"
    with pytest.raises(FileNotFoundError, match=r"embedding_model\.ckpt.*fetch-model"):
        load_encoder("speechbrain", tmp_path / "partial")


def test_fast_path_matches_the_plain_model(encoder: SpeechBrainEncoder, dialogue: np.ndarray) -> None:
    """bfloat16 batches against SpeechBrain's own fp32 encode_batch, window by window."""
    mask = speech_mask(dialogue)
    fast, times = encoder.windows(dialogue, mask)
    pieces = encoder.pieces(dialogue, mask)  # the speech samples each window holds
    assert len(pieces) == len(times) == len(fast) > 3
    assert fast.shape[1] == 192 and np.allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-4)
    for row, piece in enumerate(pieces):
        with torch.inference_mode():
            plain = encoder._model.encode_batch(torch.from_numpy(dialogue[piece])[None]).squeeze().numpy()
        cosine = float(fast[row] @ plain) / float(np.linalg.norm(plain))
        assert cosine >= 0.99, f"window {times[row]}: cosine {cosine:.4f} to the plain model"


def test_openvino_runtime_matches_the_plain_model(
    checkpoint: tuple[Path, dict[str, torch.Tensor]], offline: object, dialogue: np.ndarray
) -> None:
    """The worker's default runtime: the network converted to OpenVINO (dynamic batch, full windows only)
    gives SpeechBrain's own fp32 embeddings, window by window."""
    converted = SpeechBrainEncoder(checkpoint[0], runtime="openvino")
    mask = speech_mask(dialogue)
    pieces = converted.pieces(dialogue, mask)
    assert all(len(piece) == int(converted.window_step * SAMPLE_RATE) for piece in pieces)
    for count in (len(pieces), 3):  # any batch size
        fast, _ = converted.windows(dialogue[: pieces[count - 1][-1] + 1], mask)
        assert len(fast) == count
        for row, piece in enumerate(pieces[:count]):
            with torch.inference_mode():
                plain = (
                    converted._model.encode_batch(torch.from_numpy(dialogue[piece])[None]).squeeze().numpy()
                )
            cosine = float(fast[row] @ plain) / float(np.linalg.norm(plain))
            assert cosine >= 0.99, f"window {row}: cosine {cosine:.4f} to the plain model"


def test_silence_is_not_embedded(encoder: SpeechBrainEncoder, dialogue: np.ndarray) -> None:
    everything, all_times = encoder.windows(dialogue)
    speech_only, times = encoder.windows(dialogue, speech_mask(dialogue))
    assert len(times) < len(all_times) and len(speech_only) == len(times)
    pause_start = (len(dialogue) / SAMPLE_RATE - 3) / 2  # roughly where the pause is
    assert not [t for t in times if t[0] >= pause_start and t[1] <= pause_start + 3 - 1.5]
    assert everything.shape[1] == speech_only.shape[1] == 192


def test_fetch_model_and_compare_from_the_command_line(
    checkpoint: tuple[Path, dict[str, torch.Tensor]], dialogue: np.ndarray, tmp_path: Path
) -> None:
    """`voice fetch-model` copies a model into VOICE_MODEL_DIR; `voice compare` then runs on it, offline."""
    from tests.helpers import wav_bytes

    source, _ = checkpoint
    target = tmp_path / "var" / "ecapa"
    first, second = tmp_path / "a.wav", tmp_path / "b.wav"
    first.write_bytes(wav_bytes(dialogue[: 4 * SAMPLE_RATE]))
    second.write_bytes(wav_bytes(dialogue[-4 * SAMPLE_RATE :]))
    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "VOICE_BACKEND": "speechbrain",
        "VOICE_MODEL_DIR": str(target),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
    }

    def run(*args: str) -> str:
        done = run_cli(["voice", *args], env, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    assert "speechbrain model ready" in run("fetch-model", "--source", str(source))
    assert set(ECAPA_FILES) <= {p.name for p in target.iterdir()}  # SpeechBrain links label_encoder.ckpt
    report = json.loads(run("compare", str(first), str(first), "--json"))
    assert report["score"] == pytest.approx(1.0, abs=1e-3) and report["same_speaker"]
    assert report["threshold"] == SpeechBrainEncoder.same_speaker_threshold
    other = json.loads(run("compare", str(first), str(second), "--json"))
    assert other["score"] < report["score"]


def test_fetch_copies_every_file(checkpoint: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    directory = fetch_speechbrain_model(tmp_path / "copy", str(checkpoint[0]))
    for name in ECAPA_FILES:
        assert (directory / name).read_bytes() == (checkpoint[0] / name).read_bytes()


async def test_switching_backend_re_embeds_the_enrolment(
    sessions: async_sessionmaker[AsyncSession], encoder: SpeechBrainEncoder, tmp_path: Path
) -> None:
    """Enrolled under Resemblyzer, analysed under SpeechBrain: the worker makes the promoter's SpeechBrain
    voiceprint from the stored enrolment instead of losing the promoter check."""
    from infra.storage import LocalAudioStore
    from jobs import voice as voice_jobs
    from models import Voiceprint, VoiceRole
    from tests.helpers import save_enrolment, seed_project, seed_promoter, stored_contact

    store = LocalAudioStore(tmp_path / "audio")
    project = await seed_project(sessions)
    pavel = await seed_promoter(sessions, project)
    enrolment = demo_audio.speech(tmp_path / "enrol.ogg", voice="en+m3", repeats=2).read_bytes()
    await save_enrolment(sessions, store, pavel, enrolment)
    assert await voice_jobs.run_once(sessions, store, load_encoder("resemblyzer"), "old") is not None
    himself = demo_audio.speech(tmp_path / "contact.ogg", voice="en+m3", speed=140)
    contact_id = await stored_contact(sessions, store, project, pavel, himself.read_bytes())
    assert await voice_jobs.run_once(sessions, store, encoder, "new") is not None

    async with sessions() as session:
        prints = list(await session.scalars(select(Voiceprint).order_by(Voiceprint.id)))
    references = [
        (v.backend, v.user_id) for v in prints if v.role == VoiceRole.PROMOTER and v.contact_id is None
    ]
    assert references == [("resemblyzer", pavel.id), ("speechbrain", pavel.id)]
    assert {v.backend for v in prints if v.contact_id == contact_id} == {"speechbrain"}


def test_diarisation_windows_and_no_sure_flag_without_calibration(
    encoder: SpeechBrainEncoder, dialogue: np.ndarray
) -> None:
    """The diariser's windows are SpeechBrain's own embeddings of those samples, and with no calibration for
    this backend (none can be fitted without its weights) a self-recording flag is never stated as likely."""
    from services.voice.analysis import analyze
    from services.voice.flags import VoiceRules, recording_flags
    from services.voice.probability import packaged

    size = int(encoder.diar_window * SAMPLE_RATE)
    starts = np.array([0, SAMPLE_RATE, 4 * SAMPLE_RATE])
    windows = encoder.embed_windows(dialogue, starts, size)
    with torch.inference_mode():
        batch = torch.from_numpy(np.stack([dialogue[s : s + size] for s in starts]))
        reference = encoder._model.encode_batch(batch).float().squeeze(1).numpy()
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    assert np.min(np.sum(windows * reference, axis=1)) > 0.99  # bf16 against fp32: the same embeddings

    assert packaged("speechbrain") is None
    monologue = dialogue[: len(dialogue) // 2]
    analysis = analyze(monologue, encoder, encoder.embed(monologue))
    assert not analysis.calibrated and analysis.evidence
    assert analysis.p_self_recorded in (0.25, 0.5)  # the uncalibrated rule: plainly split, or not sure
    self_flags = [
        f
        for f in recording_flags(analysis, VoiceRules.for_encoder(encoder))
        if isinstance(f.details, SelfRecording)
    ]
    expected = ["unsure"] if analysis.p_self_recorded == 0.5 else []
    assert [f.details.confidence for f in self_flags if isinstance(f.details, SelfRecording)] == expected
