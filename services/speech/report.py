"""A stored speech report read back (`analysis_task.speech`, SpeechReport.as_dict's shape), and the marks
it pre-fills on a reviewer's card (issue #25 item 5).

Pure: the reviewer's card reads the report through services.contact_view, and services.review pre-fills a
new card's draft marks from its checks, so that the reviewer confirms instead of hunting. Reports stored
before a field existed are read as they are: anything missing is None or empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.scorecard import Marks, Scorecard

DECIDED = ("done", "not_done")  # an "unsure" check pre-fills nothing


@dataclass(frozen=True)
class SpokenLine:
    """One line of the transcript: who said it (promoter, customer, unknown) and when."""

    start: float
    speaker: str
    text: str


@dataclass(frozen=True)
class ScriptCheck:
    """One script item's answer: done / not_done / unsure, with its quote and time when heard."""

    key: str
    status: str
    quote: str | None = None
    start: float | None = None
    speaker: str | None = None
    scorecard: str | None = None  # the scorecard criterion this check pre-fills
    critical: bool = False


@dataclass(frozen=True)
class MachineVerdict:
    decision: str  # approve, reject, for_person
    confidence: float
    leaning: str | None  # approve, reject: what the machine would say even when a person decides
    reasons: list[str] = field(default_factory=list)  # codes (services.speech.verdict.decide)


@dataclass(frozen=True)
class StoredReport:
    lines: list[SpokenLine]
    checks: list[ScriptCheck]
    verdict: MachineVerdict | None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def read_report(raw: Mapping[str, Any] | None) -> StoredReport | None:
    """The report as the card shows it; None when there is none (speech analysis off, or not run)."""
    if not isinstance(raw, Mapping):
        return None
    lines = [
        SpokenLine(_float(s.get("start")) or 0.0, str(s.get("speaker") or "unknown"), text)
        for s in raw.get("segments") or []
        if isinstance(s, Mapping) and (text := _text(s.get("text"))) is not None
    ]
    checks = [
        ScriptCheck(
            key=str(c["key"]),
            status=str(c.get("status") or "unsure"),
            quote=_text(c.get("quote")),
            start=_float(c.get("start")),
            speaker=_text(c.get("speaker")),
            scorecard=_text(c.get("scorecard")),
            critical=bool(c.get("critical")),
        )
        for c in raw.get("checks") or []
        if isinstance(c, Mapping) and c.get("key")
    ]
    verdict = None
    if isinstance(stored := raw.get("verdict"), Mapping) and stored.get("decision"):
        verdict = MachineVerdict(
            decision=str(stored["decision"]),
            confidence=_float(stored.get("confidence")) or 0.0,
            leaning=_text(stored.get("leaning")),
            reasons=[str(r) for r in stored.get("reasons") or []],
        )
    return StoredReport(lines, checks, verdict)


def machine_marks(checks: Iterable[ScriptCheck], scorecard: Scorecard) -> Marks:
    """The marks the checks say: a check naming one of the scorecard's criteria (`scorecard`) marks it
    with the best value when done and the worst when not done. A criterion is left for the reviewer when
    any check naming it is unsure, or when its checks disagree (one done, another not)."""
    criteria = {c.key: c for c in scorecard.criteria}
    said: dict[str, set[str]] = {}
    for check in checks:
        if check.scorecard in criteria:
            said.setdefault(check.scorecard, set()).add(check.status)
    marks: Marks = {}
    for key, statuses in said.items():
        if len(statuses) == 1 and (status := next(iter(statuses))) in DECIDED:
            marks[key] = criteria[key].max if status == "done" else 0
    return marks
