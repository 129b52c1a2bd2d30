"""Speech recognition speed on one thread: a 60 s note, as x real time (audio seconds per second of CPU work).

Notes:
- `ru-synth`: a 60 s Russian promoter-customer dialogue (the promoter in festvox-ru's voice, espeak-ng's
  before 2026-12-05's figures were redone; the customer in espeak-ng's), through
  the field simulation's phone channel, shop noise and Opus at 24 kbit/s, as tests/test_speech.py
  builds its note (sandbox.demo_audio.russian_dialogue);
- `en-real`: 60 s of real read speech, LibriSpeech test-other utterances of one speaker joined with 0.5 s
  pauses (../shared/voice-samples; skipped where absent).

Configurations: the worker's (language given, VAD on, greedy, word timestamps) and the one measured
before this module existed (language detected, no VAD). Each is timed `--repeats` times after a warm-up
and the best is reported (the machine is shared and drifts; the best is the least disturbed run).

    .venv/bin/python bench/speech_bench.py [--repeats 3] [--threads 1] [--beam 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from infra.settings import DEFAULT_VAR, PROJECT_ROOT
from services.audio import decode
from services.speech.model import whisper_base_dir
from services.speech.recognizer import SAMPLE_RATE, WhisperRecognizer
from services.voice.analysis import to_float

SHARED = PROJECT_ROOT.parent / "shared" / "voice-samples" / "librispeech-test-other"
SECONDS = 60.0


def russian_note(path: Path) -> np.ndarray:
    from sandbox.demo_audio import russian_dialogue

    return to_float(decode(russian_dialogue(path, rounds=3).read_bytes()))[: int(SECONDS * SAMPLE_RATE)]


def english_real() -> np.ndarray | None:
    if not SHARED.is_dir():
        return None
    speaker = sorted(p for p in SHARED.iterdir() if p.is_dir())[0]
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    parts: list[np.ndarray] = []
    for flac in sorted(speaker.glob("*.flac")):
        parts += [to_float(decode(flac.read_bytes())), pause]
        if sum(len(p) for p in parts) >= SECONDS * SAMPLE_RATE:
            break
    return np.concatenate(parts)[: int(SECONDS * SAMPLE_RATE)]


def timed(
    recognizer: WhisperRecognizer, wav: np.ndarray, repeats: int, *, vad: bool
) -> tuple[float, float, str, float]:
    """Best x real time over `repeats` runs by the wall clock and by the process's CPU time (on a shared
    machine the wall clock also counts the time other processes took the core), with the last text and
    confidence."""
    recognizer.transcribe(wav[: 5 * SAMPLE_RATE])  # warm-up
    best_wall = best_cpu = 0.0
    text, confidence = "", 0.0
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        if vad:
            transcript = recognizer.transcribe(wav)
            text, confidence = transcript.text, transcript.confidence
        else:  # the earlier measurement: the whole note decoded, language detected
            pieces, _ = recognizer.model.transcribe(
                wav, language=recognizer.language, beam_size=recognizer.beam_size
            )
            text = " ".join(p.text for p in pieces)
        seconds = len(wav) / SAMPLE_RATE
        best_wall = max(best_wall, seconds / (time.perf_counter() - wall))
        best_cpu = max(best_cpu, seconds / (time.process_time() - cpu))
    return best_wall, best_cpu, text, confidence


def main(args: argparse.Namespace) -> None:
    import tempfile

    from bot.logs import setup_logging

    setup_logging("WARNING", "console")
    model = whisper_base_dir(DEFAULT_VAR / "models" / "whisper-base")
    with tempfile.TemporaryDirectory() as tmp:
        notes = {"ru-synth": (russian_note(Path(tmp) / "note.ogg"), "ru"), "en-real": (english_real(), "en")}
    for name, (wav, language) in notes.items():
        if wav is None:
            print(f"{name}: skipped (no {SHARED})")
            continue
        for label, lang, vad in (("worker", language, True), ("detect, no VAD", None, False)):
            recognizer = WhisperRecognizer(model, language=lang, threads=args.threads, beam_size=args.beam)
            wall, cpu, text, confidence = timed(recognizer, wav, args.repeats, vad=vad)
            print(
                f"{name} {len(wav) / SAMPLE_RATE:.0f} s, {label}: {wall:.1f}x real time by the clock, "
                f"{cpu:.1f}x by CPU time, {args.threads} thread(s), beam {args.beam}"
                + (f", confidence {confidence:.2f}" if vad else ""),
                flush=True,
            )
            print(f"    {text[:160]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam", type=int, default=1)
    main(parser.parse_args())
