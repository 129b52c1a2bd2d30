"""Real audio made on the spot (espeak-ng speech, ffmpeg silence and tones) for the sandbox and the tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

SENTENCE = (
    "Good afternoon! Would you like to try our new coffee? It is roasted in small batches, it tastes of "
    "chocolate and nuts, and today there is a discount of twenty percent on every pack. "
)


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def speech(
    path: Path,
    *,
    repeats: int = 1,
    voice: str = "en",
    speed: int = 160,
    pitch: int = 50,
    text: str = SENTENCE,
) -> Path:
    """Synthesised speech encoded like a Telegram voice note (Opus in OGG)."""
    wav = path.with_suffix(".wav")
    _run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text * repeats])
    _run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(wav),
            "-ac",
            "1",
            "-ar",
            "48000",
            "-c:a",
            "libopus",
            "-b:a",
            "24k",
            str(path),
        ]
    )
    wav.unlink()
    return path


def _generated(path: Path, source: str, codec: str, bitrate: str) -> Path:
    _run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            source,
            "-c:a",
            codec,
            "-b:a",
            bitrate,
            str(path),
        ]
    )
    return path


def silence(path: Path, seconds: float) -> Path:
    return _generated(path, f"anullsrc=r=48000:cl=mono:d={seconds}", "libopus", "16k")


def tone(path: Path, seconds: float) -> Path:
    return _generated(path, f"sine=frequency=440:duration={seconds}", "libmp3lame", "64k")
