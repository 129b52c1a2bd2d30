"""Checking and decoding recordings: everything a voice note must pass before it becomes a contact.

Decoding goes through ffmpeg (the one pydub uses) straight to 16 kHz mono PCM, capped just past the
project's maximum length, so a 2-hour file costs no more memory than an allowed one.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from enum import StrEnum

from pydub import AudioSegment
from pydub.silence import detect_nonsilent
from pydub.utils import get_encoder_name

SAMPLE_RATE = 16_000
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
SILENCE_THRESHOLD_DBFS = -45.0  # below this, and 25 dB under the recording's peak, is silence
INAUDIBLE_PEAK_DBFS = -55.0  # a recording whose loudest moment is quieter than this has nothing in it
MIN_SOUND_SECONDS = 1.0
AUDIO_DOCUMENT_TYPES = ("audio/", "video/ogg", "application/ogg")


class AudioProblem(StrEnum):
    NOT_AUDIO = "not_audio"
    TOO_BIG = "too_big"
    UNDECODABLE = "undecodable"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    SILENT = "silent"


class AudioRejected(Exception):
    def __init__(self, problem: AudioProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True)
class AudioBounds:
    min_seconds: float
    max_seconds: float


@dataclass(frozen=True)
class AudioCheck:
    duration_seconds: float
    sound_seconds: float  # above the silence threshold
    segment: AudioSegment


def precheck(
    mime_type: str | None, file_size: int | None, claimed_seconds: int | None, bounds: AudioBounds
) -> None:
    """Cheap checks on Telegram's metadata, before anything is downloaded."""
    if mime_type is not None and not mime_type.startswith(AUDIO_DOCUMENT_TYPES):
        raise AudioRejected(AudioProblem.NOT_AUDIO)
    if file_size is not None and file_size > TELEGRAM_DOWNLOAD_LIMIT:
        raise AudioRejected(AudioProblem.TOO_BIG)
    if claimed_seconds and claimed_seconds > bounds.max_seconds + 1:
        raise AudioRejected(AudioProblem.TOO_LONG)


def decode(data: bytes, *, max_seconds: float | None = None, timeout: float = 120.0) -> AudioSegment:
    """Any format ffmpeg reads -> 16 kHz mono 16-bit AudioSegment. Blocking: call it from a worker thread."""
    command = [
        get_encoder_name(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        "pipe:0",
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-f",
        "s16le",
    ]
    if max_seconds is not None:
        command += ["-t", f"{max_seconds + 1:.3f}"]
    command.append("pipe:1")
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudioRejected(AudioProblem.UNDECODABLE) from exc
    if done.returncode != 0 or len(done.stdout) < 2:
        raise AudioRejected(AudioProblem.UNDECODABLE)
    pcm = done.stdout[: len(done.stdout) // 2 * 2]
    return AudioSegment(data=pcm, sample_width=2, frame_rate=SAMPLE_RATE, channels=1)


def sound_seconds(segment: AudioSegment) -> float:
    if segment.max_dBFS == float("-inf"):
        return 0.0
    spans = detect_nonsilent(
        segment, min_silence_len=300, silence_thresh=SILENCE_THRESHOLD_DBFS, seek_step=10
    )
    return float(sum(end - start for start, end in spans)) / 1000.0


def check_recording(data: bytes, bounds: AudioBounds) -> AudioCheck:
    """Decode and validate a recording; raises AudioRejected with the first problem found. Blocking."""
    if len(data) > TELEGRAM_DOWNLOAD_LIMIT:
        raise AudioRejected(AudioProblem.TOO_BIG)
    segment = decode(data, max_seconds=bounds.max_seconds)
    duration = len(segment) / 1000.0
    if duration > bounds.max_seconds:
        raise AudioRejected(AudioProblem.TOO_LONG)
    sound = sound_seconds(segment)
    if sound < MIN_SOUND_SECONDS:
        raise AudioRejected(AudioProblem.SILENT)
    if duration < bounds.min_seconds:
        raise AudioRejected(AudioProblem.TOO_SHORT)
    return AudioCheck(duration, sound, segment)
