"""One note from audio to verdict: recognise, join with the diarisation, check the script, decide.

Shared by `fieldcheck speech analyze` and the voice worker, so that what the command line shows for a
file is what the worker stores for a contact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from services.speech.dialogue import Line, attribute, talk_seconds, turns_of, voice_seconds
from services.speech.recognizer import Recognizer, Transcript
from services.speech.script import Check, ScriptRules, check_script
from services.speech.verdict import FlagLike, Verdict, VerdictRules, decide

log = structlog.get_logger(__name__)


@dataclass
class SpeechReport:
    transcript: Transcript
    lines: list[Line]
    checks: list[Check]
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        """The documented shape: language, segments (start, end, speaker, text), checks, verdict."""
        return {
            "language": self.transcript.language,
            "segments": [line.as_dict() for line in self.lines],
            "checks": [check.as_dict() for check in self.checks],
            "verdict": self.verdict.as_dict(),
            "recognition": self.transcript.summary(),
            "talk_seconds": talk_seconds(self.lines),
        }


def analyse(
    wav: np.ndarray,
    recognizer: Recognizer,
    rules: ScriptRules,
    *,
    segments: Sequence[tuple[float, float, int]] | None = None,
    roles: Sequence[str] = (),
    flags: Sequence[FlagLike] = (),
    verdict_rules: VerdictRules | None = None,
) -> SpeechReport:
    """`segments` and `roles`: the diarisation's turns (Analysis.segments) and each voice's role; without
    them every line is "unknown" and checks that need a speaker say so."""
    transcript = recognizer.transcribe(wav)
    turns = turns_of(segments, roles) if segments else None
    lines = attribute(transcript, turns)
    checks = check_script(lines, rules, voice_seconds(turns) if turns else None)
    verdict = decide(checks, transcript.confidence, flags, verdict_rules)
    log.info(
        "speech_analysed",
        backend=transcript.backend,
        seconds=round(transcript.seconds, 2),
        duration=round(transcript.duration, 2),
        confidence=transcript.confidence,
        decision=verdict.decision,
        done=sum(c.status == "done" for c in checks),
        checks=len(checks),
    )
    return SpeechReport(transcript, lines, checks, verdict)
