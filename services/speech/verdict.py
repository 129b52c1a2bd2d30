"""The automatic verdict for one contact: approve, reject or for_person, with how sure it is.

A pure function of three things, so that it can be tested, replayed over stored analyses and compared
with reviewers' verdicts: the voice flags (any flag goes to a person: a flag is a suspicion that only a
person may turn into an accusation), the script checks, and the recogniser's own confidence (checks on
words it barely heard are worth little). The confidence is the weakest deciding check's, scaled down
when the recognition is less than good; below the project's bar the decision stays with a person, with the machine's
leaning kept for the reviewer and for the audit comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from services.speech.script import Check

Decision = Literal["approve", "reject", "for_person"]


class FlagLike(Protocol):
    """A voice flag as services.voice.flags raises it, or as stored (models.VoiceFlag)."""

    @property
    def kind(self) -> str: ...

    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class VerdictRules:
    # Not yet fitted: docs/benchmarks.md says what the evaluation set must show before these are trusted.
    min_confidence: float = 0.75  # below it, a person decides
    min_recognition: float = 0.45  # the recogniser's own confidence under which no check is trusted
    good_recognition: float = 0.6  # from here on (avg log prob -0.5 and up) the words are taken as heard
    approve_share: float = 0.75  # weighted share of non-critical checks done for an approval
    reject_share: float = 0.35  # at or below it, a rejection

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> VerdictRules:
        raw = raw or {}
        return cls(**{k: float(raw[k]) for k in cls.__dataclass_fields__ if k in raw})


@dataclass
class Verdict:
    decision: Decision
    confidence: float
    leaning: Literal["approve", "reject"] | None  # what the machine would say, even when a person decides
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "confidence": round(self.confidence, 3),
            "leaning": self.leaning,
            "reasons": self.reasons,
        }


def decide(
    checks: Sequence[Check],
    recognition_confidence: float,
    flags: Sequence[FlagLike] = (),
    rules: VerdictRules | None = None,
) -> Verdict:
    """The contact's verdict. Reasons are short codes ("flag:no_customer", "critical_failed:offer",
    "unsure:greeting", "low_recognition", "low_confidence", "script_incomplete") for the card and the audit."""
    rules = rules or VerdictRules()
    reasons = [f"flag:{flag.kind}" for flag in flags]
    critical_failed = [c for c in checks if c.critical and c.status == "not_done"]
    critical_unsure = [c for c in checks if c.critical and c.status == "unsure"]
    others = [c for c in checks if not c.critical]
    done_share = (sum(c.status == "done" for c in others) / len(others)) if others else 1.0

    leaning: Literal["approve", "reject"]
    deciding: list[Check]
    if critical_failed:
        leaning, deciding = "reject", critical_failed
        reasons += [f"critical_failed:{c.key}" for c in critical_failed]
    elif done_share <= rules.reject_share:
        leaning, deciding = "reject", [c for c in others if c.status == "not_done"]
        reasons.append("script_incomplete")
    else:
        leaning, deciding = "approve", [c for c in checks if c.status == "done"]
    reasons += [f"unsure:{c.key}" for c in checks if c.status == "unsure"]

    recognition = max(0.0, min(1.0, recognition_confidence))
    # A critical failure or an approval stands on its weakest check; a rejection for an incomplete script
    # on the missing items together (one of five near a threshold does not make the script present).
    if leaning == "reject" and not critical_failed and deciding:
        weakest = sum(c.confidence for c in deciding) / len(deciding)
    else:
        weakest = min((c.confidence for c in deciding), default=0.5)
    confidence = round(min(1.0, recognition / rules.good_recognition) * weakest, 4)
    if recognition < rules.min_recognition:
        reasons.append("low_recognition")
    middle = leaning == "approve" and done_share < rules.approve_share
    if middle:
        reasons.append("script_partly_done")
    person = (
        bool(flags)
        or bool(critical_unsure)
        or recognition < rules.min_recognition
        or middle
        or confidence < rules.min_confidence
    )
    if person and confidence < rules.min_confidence and "low_confidence" not in reasons:
        reasons.append("low_confidence")
    return Verdict("for_person" if person else leaning, confidence, leaning, reasons)
