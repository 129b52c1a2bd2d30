"""The automatic verdict for one contact: approve, reject or for_person, with how sure it is.

A pure function of three things, so that it can be tested, replayed over stored analyses and compared
with reviewers' verdicts: the voice flags (any flag goes to a person: a flag is a suspicion that only a
person may turn into an accusation), the script checks, and the recogniser's own confidence (checks on
words it barely heard are worth little). The confidence is that of the evidence which would have to be
wrong for the decision to flip: an approval on all five items does not fall with its weakest one, only with
its second weakest; a rejection for an incomplete script stands on the missing items together; a critical
failure on the surest failed item. It is scaled down when the recognition is less than good; below the
project's bar the decision stays with a person, with the machine's leaning kept for the reviewer and for the
audit comparison. "Unsure" checks count against the decision either way: as not done for an approval, as
said for a rejection.

By default the script has one pass mark: more than half of it done is an approval, half or less a
rejection. So every contact has a verdict that follows from what was said, and only doubt sends it to a
person (issue #25: "every uncertain verdict" goes to one, "the rest is decided automatically"). A project
that wants a person to hear middling scripts opens a band between the two shares (`fieldcheck admin
configure N --approve-share 0.75 --reject-share 0.35`, the defaults before 2026-12-07): a script between
them goes to a person as "script_partly_done".
"""

from __future__ import annotations

import math
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
    approve_share: float = 0.6  # share of the non-critical checks done for an approval (3 of 5)
    reject_share: float = 0.5  # at or below it, a rejection; between the two a person (never with 3-6 items)

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
    done = [c for c in others if c.status == "done"]
    missing = [c for c in others if c.status == "not_done"]
    unsure = len(others) - len(done) - len(missing)
    done_share = (len(done) / len(others)) if others else 1.0

    leaning: Literal["approve", "reject"]
    if critical_failed:
        leaning = "reject"
        reasons += [f"critical_failed:{c.key}" for c in critical_failed]
        # Any one failed critical item rejects: the rejection falls only if every one of them is wrong.
        weakest = max(c.confidence for c in critical_failed)
    elif done_share <= rules.reject_share:
        leaning = "reject"
        reasons.append("script_incomplete")
        # On the missing items together (one of five near a threshold does not make the script present),
        # and only if the unsure ones, taken as said, would still leave the script under the share.
        robust = (len(done) + unsure) / len(others) <= rules.reject_share
        weakest = sum(c.confidence for c in missing) / len(missing) if robust and missing else 0.5
    else:
        leaning = "approve"
        # The approval falls when so many "done" items are wrong that the share drops under the bar, or when
        # any critical one is.
        needed = math.ceil(rules.approve_share * len(others) - 1e-9) if others else 0
        critical_done = [c.confidence for c in checks if c.critical and c.status == "done"]
        spare = len(done) - needed
        candidates = critical_done + ([_kth_weakest(done, spare + 1)] if done and spare >= 0 else [])
        weakest = min(candidates, default=0.5)
    reasons += [f"unsure:{c.key}" for c in checks if c.status == "unsure"]

    recognition = max(0.0, min(1.0, recognition_confidence))
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


def _kth_weakest(checks: Sequence[Check], k: int) -> float:
    """The confidence of the k-th least sure check (1: the weakest): the decision stands unless k of them
    are wrong, and k wrong answers are no likelier than the k-th weakest being wrong."""
    ranked = sorted(c.confidence for c in checks)
    return ranked[min(max(k, 1), len(ranked)) - 1] if ranked else 0.5
