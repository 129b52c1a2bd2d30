"""Who said what: the recogniser's timed words joined with the diarisation's turns.

The diarisation (services.voice.analysis) says who speaks when, as (start, end, voice index) turns with a
role per voice (promoter, customer); the recogniser says which words were spoken when. Each word goes to
the turn that covers most of it (else the nearest turn within MAX_GAP seconds; else "unknown"), and runs of
one speaker's words become the dialogue's lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.speech.recognizer import Transcript, Word

MAX_GAP = 0.6  # seconds: a word this far from every diarised turn is nobody's for sure
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Line:
    start: float
    end: float
    speaker: str  # promoter, customer, unknown
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    def as_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "speaker": self.speaker, "text": self.text}


Turns = Sequence[tuple[float, float, str]]  # (start, end, speaker role)


def turns_of(
    segments: Sequence[tuple[float, float, int]], roles: Sequence[str]
) -> list[tuple[float, float, str]]:
    """`Analysis.segments` with each voice index replaced by that voice's role."""
    return [(start, end, roles[index] if index < len(roles) else UNKNOWN) for start, end, index in segments]


def voice_seconds(turns: Turns) -> dict[str, float]:
    """Seconds of speech per role in the diarisation's turns (overlapping turns each count)."""
    seconds: dict[str, float] = {}
    for start, end, speaker in turns:
        seconds[speaker] = seconds.get(speaker, 0.0) + max(end - start, 0.0)
    return {k: round(v, 2) for k, v in seconds.items()}


def speaker_of(word: Word, turns: Turns) -> str:
    best, best_overlap, best_gap = UNKNOWN, 0.0, MAX_GAP
    for start, end, speaker in turns:
        overlap = min(end, word.end) - max(start, word.start)
        if overlap > best_overlap:
            best, best_overlap = speaker, overlap
        elif best_overlap <= 0:
            gap = max(start - word.end, word.start - end)
            if gap < best_gap:
                best, best_gap = speaker, gap
    return best


def attribute(transcript: Transcript, turns: Turns | None) -> list[Line]:
    """The transcript as lines of one speaker each. Without diarisation every line is "unknown", split
    where the recogniser's own segments end. A change of speaker inside a segment starts a new line."""
    lines: list[Line] = []
    for segment in transcript.segments:
        if segment.hallucinated:
            continue
        current: list[Word] = []
        current_speaker = ""
        for word in segment.words:
            speaker = speaker_of(word, turns) if turns else UNKNOWN
            if current and speaker != current_speaker:
                lines.append(Line(current[0].start, current[-1].end, current_speaker, tuple(current)))
                current = []
            current.append(word)
            current_speaker = speaker
        if current:
            lines.append(Line(current[0].start, current[-1].end, current_speaker, tuple(current)))
    return _merge(lines)


def _merge(lines: list[Line]) -> list[Line]:
    """Neighbouring lines of one speaker with under a second between them are one line."""
    merged: list[Line] = []
    for line in lines:
        if merged and merged[-1].speaker == line.speaker and line.start - merged[-1].end < 1.0:
            last = merged[-1]
            merged[-1] = Line(last.start, line.end, last.speaker, last.words + line.words)
        else:
            merged.append(line)
    return merged


def talk_seconds(lines: Sequence[Line]) -> dict[str, float]:
    """Seconds of words per speaker (the words' own spans, so pauses inside a line do not count)."""
    seconds: dict[str, float] = {}
    for line in lines:
        seconds[line.speaker] = seconds.get(line.speaker, 0.0) + sum(
            max(w.end - w.start, 0.0) for w in line.words
        )
    return {k: round(v, 2) for k, v in seconds.items()}
