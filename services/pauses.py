"""The recording with its long pauses cut, for the reviewer (issue #25 item 5): a project option.

A reviewer listens to every second of a recording; in a shop the promoter waits while a customer tastes or
reads a label, and those silences are paid listening time. Where the project turns `cut_pauses` on, the
voice worker keeps a second voice note beside the original, made from the diarisation's speech turns: every
pause longer than MAX_PAUSE keeps KEPT_PAUSE of silence (half after the last word, half before the next),
so turn-taking still sounds like a conversation and the cut is heard as a short gap, not a jump. Speech is
never cut, and the original stays what the manager's "Open contact" sends. The shortened note
is named in the analysis' evidence (models.payloads.ShortenedAudio) and erased with the recording.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.audio import SAMPLE_RATE, encode_voice_note, from_float

MAX_PAUSE = 1.5  # seconds: a silence up to this long is part of the conversation and stays whole
KEPT_PAUSE = 0.6  # seconds of silence left where a longer pause was cut
MIN_SAVED = 3.0  # seconds: a note shortened by less is not worth a second file; the original is sent
FADE = 0.01  # seconds of fade at each cut, so it does not click
SUFFIX = ".pauses-cut.ogg"  # the store's key suffix (infra.storage keys are the content's hash)


@dataclass(frozen=True)
class ShortenedNote:
    voice_note: bytes  # Ogg/Opus, as sendVoice plays it
    seconds: float
    original_seconds: float


def merged_turns(
    segments: Sequence[tuple[float, float, object]], duration: float
) -> list[tuple[float, float]]:
    """The diarisation's turns (start, end, whoever) merged where they touch or overlap, within the note."""
    spans: list[tuple[float, float]] = []
    for began, ended, _speaker in sorted(segments, key=lambda s: s[0]):
        start, end = max(0.0, float(began)), min(duration, float(ended))
        if end <= start:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def kept_ranges(spans: Sequence[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    """What of the note is kept: the speech spans and their pauses, each pause longer than MAX_PAUSE (the
    silence before the first word and after the last too) cut to KEPT_PAUSE."""
    half = KEPT_PAUSE / 2
    ranges: list[tuple[float, float]] = []
    cursor = 0.0  # the end of what is kept so far
    for index, (start, end) in enumerate(spans):
        gap = start - cursor
        edge = index == 0  # the silence before the first word has no word before it
        if gap > (MAX_PAUSE / 2 if edge else MAX_PAUSE):
            if not edge:
                ranges.append((cursor, cursor + half))
            cursor = start - half
        ranges.append((cursor, end))
        cursor = end
    if duration - cursor > MAX_PAUSE / 2:
        ranges.append((cursor, cursor + half))
    elif spans:
        ranges.append((cursor, duration))
    merged: list[tuple[float, float]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1] + 1e-9:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def shorten_pauses(wav: np.ndarray, segments: Sequence[tuple[float, float, object]]) -> np.ndarray:
    """The note (16 kHz mono float) with its long pauses cut; unchanged when nothing was heard as speech."""
    duration = len(wav) / SAMPLE_RATE
    spans = merged_turns(segments, duration)
    if not spans:
        return wav
    fade = int(FADE * SAMPLE_RATE)
    pieces = []
    for start, end in kept_ranges(spans, duration):
        piece = wav[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)].astype(np.float32)
        if len(piece) > 2 * fade:
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            piece[:fade] *= ramp
            piece[-fade:] *= ramp[::-1]
        pieces.append(piece)
    return np.concatenate(pieces) if pieces else wav


def shortened_note(wav: np.ndarray, segments: Sequence[tuple[float, float, object]]) -> ShortenedNote | None:
    """The voice note with long pauses cut, or None when it would save less than MIN_SAVED seconds.
    Blocking (ffmpeg encodes it): call it from a worker thread."""
    original = len(wav) / SAMPLE_RATE
    short = shorten_pauses(wav, segments)
    seconds = len(short) / SAMPLE_RATE
    if original - seconds < MIN_SAVED:
        return None
    return ShortenedNote(encode_voice_note(from_float(short)), round(seconds, 1), round(original, 1))
