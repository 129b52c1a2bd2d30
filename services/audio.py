"""Checking and decoding recordings: everything a voice note must pass before it becomes a contact.

Decoding goes straight to 16 kHz mono PCM, capped just past the project's maximum length, so a 2-hour file
costs no more memory than an allowed one. Ogg (every Telegram voice note: Opus) is decoded in-process by
libopus itself, straight at 16 kHz (mutagen reads the Ogg pages); other Ogg streams by libsndfile
(soundfile), resampled by soxr; anything else, or an Ogg file both refuse, goes through ffmpeg (the one
pydub uses). Why three paths: one ffmpeg process per voice note was most of intake's CPU under load (a
process start costs more than decoding 12 s of Opus), and libsndfile decodes Opus at 48 kHz and through
its own buffers: 50 ms for a 12 s note against libopus's 16 ms at 16 kHz, on a core intake shares.
"""

from __future__ import annotations

import ctypes
import functools
import io
import struct
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType

import numpy as np
import soundfile
import soxr
from mutagen.ogg import OggPage
from pydub import AudioSegment
from pydub.utils import get_encoder_name

from services.problems import ProblemError

SAMPLE_RATE = 16_000
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
SILENCE_THRESHOLD_DBFS = -45.0  # a 300 ms window quieter than this is silence
INAUDIBLE_PEAK_DBFS = -55.0  # a recording whose loudest moment is quieter than this has nothing in it
MIN_SOUND_SECONDS = 1.0
_SILENCE_RMS = 32768.0 * 10 ** (SILENCE_THRESHOLD_DBFS / 20)
AUDIO_DOCUMENT_TYPES = ("audio/", "video/ogg", "application/ogg")


class AudioProblem(StrEnum):
    NOT_AUDIO = "not_audio"
    TOO_BIG = "too_big"
    UNDECODABLE = "undecodable"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    SILENT = "silent"


class AudioRejected(ProblemError[AudioProblem]):
    """A recording refused before anything of it is kept."""


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
    if data[:4] == b"OggS":
        segment = _decode_opus(data, max_seconds)
        if segment is None:
            segment = _decode_ogg(data, max_seconds)
        if segment is not None:
            return segment
    return decode_with_ffmpeg(data, max_seconds=max_seconds, timeout=timeout)


@functools.cache
def _libopus() -> ModuleType | None:
    """opuslib's ctypes prototypes over the system libopus (installed with ffmpeg); None without it."""
    try:
        import opuslib_next.api.decoder  # noqa: PLC0415  optional: None when libopus is missing
    except Exception:  # the package raises a bare Exception when libopus is not found
        return None
    prototypes: ModuleType = opuslib_next.api.decoder
    return prototypes


OPUS_RATE = 48_000  # the rate of Ogg Opus granule positions and pre-skip, whatever the decoding rate
_MAX_FRAME = SAMPLE_RATE * 120 // 1000  # the longest Opus packet: 120 ms


def _decode_opus(data: bytes, max_seconds: float | None) -> AudioSegment | None:
    """An Ogg Opus stream (RFC 7845, mono or stereo) -> 16 kHz mono, decoded by libopus at that rate with
    pre-skip, end trimming and output gain applied; None for anything else (another codec, several
    streams, a damaged page or packet): the next decoder gets its turn."""
    libopus = _libopus()
    if libopus is None:
        return None
    pages = []
    reader = io.BytesIO(data)
    try:
        while True:
            pages.append(OggPage(reader))  # type: ignore[no-untyped-call]
    except EOFError:
        pass
    except Exception:  # mutagen's OggError and struct errors on a damaged page
        return None
    if len(pages) < 2 or any(page.serial != pages[0].serial for page in pages):
        return None
    try:
        packets = OggPage.to_packets(pages)  # type: ignore[no-untyped-call]
    except ValueError:  # a page missing in the middle
        return None
    head = packets[0]
    if (
        len(packets) < 3
        or len(head) < 19
        or head[:8] != b"OpusHead"
        or not packets[1].startswith(b"OpusTags")
    ):
        return None
    channels, pre_skip, _rate, gain_q8, mapping = struct.unpack_from("<BHIhB", head, 9)
    if mapping != 0 or channels not in (1, 2):
        return None
    skip = pre_skip * SAMPLE_RATE // OPUS_RATE  # pre-skip is counted at 48 kHz
    limit = None if max_seconds is None else int((max_seconds + 1) * SAMPLE_RATE) + skip
    out = np.empty(_MAX_FRAME * (len(packets) - 2), dtype=np.int16)
    state = libopus.create_state(SAMPLE_RATE, 1)  # a mono decoder downmixes a stereo stream itself
    written, last = 0, _MAX_FRAME
    try:
        for packet in packets[2:]:
            # An empty packet is a lost one: libopus conceals it for the length of the one before.
            size = last if not packet else _MAX_FRAME
            target = ctypes.cast(out.ctypes.data + 2 * written, ctypes.POINTER(ctypes.c_int16))
            got = libopus.libopus_decode(state, packet or None, len(packet), target, size, 0)
            if got < 0:
                return None
            written += got
            last = got or last
            if limit is not None and written >= limit:
                break
    finally:
        libopus.destroy(state)
    end = written
    if pages[-1].position > 0 and (limit is None or written < limit):
        end = min(end, pages[-1].position * SAMPLE_RATE // OPUS_RATE)  # the encoder's padding, trimmed
    pcm = out[skip:end]
    if pcm.size < 2:
        return None
    if gain_q8:
        gained = pcm.astype(np.float32) * np.float32(10 ** (gain_q8 / 256 / 20))
        pcm = np.clip(gained, -32768, 32767).astype(np.int16)
    return AudioSegment(data=pcm.astype("<i2").tobytes(), sample_width=2, frame_rate=SAMPLE_RATE, channels=1)


def _decode_ogg(data: bytes, max_seconds: float | None) -> AudioSegment | None:
    """None when libsndfile cannot read it (ffmpeg then gets its turn: it reads more variants)."""
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            rate = sound.samplerate
            frames = -1 if max_seconds is None else int((max_seconds + 1) * rate)
            samples = sound.read(frames=frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError):
        return None
    if samples.shape[0] < 2:
        return None
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return from_float(mono)


def from_float(wav: np.ndarray) -> AudioSegment:
    """16 kHz mono float samples (-1..1) as 16-bit PCM: the inverse of services.voice.analysis.to_float."""
    pcm = (np.clip(wav, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    return AudioSegment(data=pcm, sample_width=2, frame_rate=SAMPLE_RATE, channels=1)


def _ffmpeg(arguments: list[str], data: bytes, timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg (pydub's choice of binary) quietly, `data` on stdin; one that cannot start or runs past
    `timeout` is an undecodable recording."""
    command = [get_encoder_name(), "-nostdin", "-hide_banner", "-loglevel", "error", *arguments]
    try:
        return subprocess.run(command, input=data, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudioRejected(AudioProblem.UNDECODABLE) from exc


def decode_with_ffmpeg(
    data: bytes, *, max_seconds: float | None = None, timeout: float = 120.0
) -> AudioSegment:
    arguments = ["-i", "pipe:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le"]
    if max_seconds is not None:
        arguments += ["-t", f"{max_seconds + 1:.3f}"]
    arguments.append("pipe:1")
    done = _ffmpeg(arguments, data, timeout)
    if done.returncode != 0 or len(done.stdout) < 2:
        raise AudioRejected(AudioProblem.UNDECODABLE)
    pcm = done.stdout[: len(done.stdout) // 2 * 2]
    return AudioSegment(data=pcm, sample_width=2, frame_rate=SAMPLE_RATE, channels=1)


VOICE_NOTE_BITRATE = "32k"  # Opus for speech at 16 kHz mono: what Telegram's own voice notes carry


def encode_voice_note(segment: AudioSegment, *, timeout: float = 120.0) -> bytes:
    """Decoded audio -> an Ogg/Opus voice note (what sendVoice plays as a voice message). A recording that
    came as an audio file or a document is kept as one: Telegram would re-send its file_id unchanged, as a
    music player or a file. Blocking: call it from a worker thread."""
    reading = ["-f", "s16le", "-ar", str(segment.frame_rate), "-ac", str(segment.channels), "-i", "pipe:0"]
    writing = ["-c:a", "libopus", "-b:a", VOICE_NOTE_BITRATE, "-application", "voip", "-f", "ogg", "pipe:1"]
    done = _ffmpeg([*reading, *writing], segment.raw_data, timeout)
    voice: bytes = done.stdout
    if done.returncode != 0 or voice[:4] != b"OggS":
        raise AudioRejected(AudioProblem.UNDECODABLE)
    return voice


def sound_seconds(segment: AudioSegment) -> float:
    """Seconds not inside a silence of 300 ms or more (pydub's detect_nonsilent with a 10 ms step, in numpy:
    the pure-Python loop cost more than the decoding)."""
    samples = np.frombuffer(segment.raw_data, dtype="<i2").astype(np.float64)
    step, window = SAMPLE_RATE // 100, SAMPLE_RATE * 3 // 10  # 10 ms, 300 ms
    if samples.size < window:
        loud = samples.size and np.sqrt(np.mean(samples**2)) > _SILENCE_RMS
        return samples.size / SAMPLE_RATE if loud else 0.0
    energy = np.concatenate(([0.0], np.cumsum(samples**2)))
    starts = np.arange(0, samples.size - window + 1, step)
    rms = np.sqrt((energy[starts + window] - energy[starts]) / window)
    covered = np.zeros(samples.size + 1, dtype=np.int32)  # +1 at a silent window's start, -1 at its end
    silent = starts[rms < _SILENCE_RMS]
    np.add.at(covered, silent, 1)
    np.add.at(covered, silent + window, -1)
    in_silence = np.cumsum(covered[:-1]) > 0
    return float(samples.size - int(in_silence.sum())) / SAMPLE_RATE


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
