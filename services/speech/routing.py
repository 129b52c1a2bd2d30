"""Who decides a contact: the machine (its speech verdict stands) or a person (issue #25 item 4).

A pure policy over what is already known when a queued contact would go to a reviewer, so that it can be
tested rule by rule and replayed over stored analyses. A person gets every contact with a voice flag
(a suspicion only a person may turn into an accusation), every uncertain verdict (for_person, or a
confidence under the project's bar), a failed critical check, a disputed contact, a new promoter's first
contacts, a deterministic audit share, whose reviews are what the automatic verdicts are measured
against, and every contact whose report checks a criterion handed back to people because those audits
disagreed with the machine on it (`judge_criteria`, run with the daily digest). Off unless the project's
speech settings say "routing": true.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.speech.verdict import VerdictRules

AUTOMATIC: Literal["automatic"] = "automatic"
PERSON: Literal["person"] = "person"
Route = Literal["automatic", "person"]

DEFAULT_AUDIT_SHARE = 0.10
DEFAULT_NEW_PROMOTER_CONTACTS = 5
DEFAULT_CRITERION_BAR = 0.9  # audit agreement on a criterion below which it goes back to people
DEFAULT_CRITERION_MIN_PAIRS = 20  # audit pairs on a criterion before it is judged either way


@dataclass(frozen=True)
class RoutingRules:
    enabled: bool = False
    audit_share: float = DEFAULT_AUDIT_SHARE
    new_promoter_contacts: int = DEFAULT_NEW_PROMOTER_CONTACTS
    min_confidence: float = VerdictRules().min_confidence
    criterion_bar: float = DEFAULT_CRITERION_BAR
    criterion_min_pairs: int = DEFAULT_CRITERION_MIN_PAIRS

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> RoutingRules:
        """From project.speech_settings: "routing", "audit_share", "new_promoter_contacts", "min_confidence"
        (the last falls back to the verdict's own bar, speech_settings["verdict"]["min_confidence"]),
        "criterion_bar" and "criterion_min_pairs"."""
        settings = settings or {}
        verdict = settings.get("verdict") or {}
        bar = settings.get("min_confidence", verdict.get("min_confidence", cls.min_confidence))
        return cls(
            enabled=bool(settings.get("routing", False)) and bool(settings.get("enabled", False)),
            audit_share=min(1.0, max(0.0, float(settings.get("audit_share", DEFAULT_AUDIT_SHARE)))),
            new_promoter_contacts=max(
                0, int(settings.get("new_promoter_contacts", DEFAULT_NEW_PROMOTER_CONTACTS))
            ),
            min_confidence=float(bar),
            criterion_bar=min(1.0, max(0.0, float(settings.get("criterion_bar", DEFAULT_CRITERION_BAR)))),
            criterion_min_pairs=max(1, int(settings.get("criterion_min_pairs", DEFAULT_CRITERION_MIN_PAIRS))),
        )


@dataclass(frozen=True)
class Routing:
    route: Route
    verdict: Literal["approve", "reject"] | None = None  # set when the route is automatic
    reasons: list[str] = field(default_factory=list)  # why a person decides: "flag:no_customer", "audit"…

    def as_dict(self) -> dict[str, Any]:
        return {"route": self.route, "verdict": self.verdict, "reasons": self.reasons}


def in_audit(contact_id: int, share: float) -> bool:
    """Deterministic and evenly spread: the same contact is always in or out of a project's audit share
    (a hash, not the calibration sample's multiplier, so the two samples do not pick the same contacts)."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"audit:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def route(
    *,
    contact_id: int,
    speech: Mapping[str, Any],
    flags: Sequence[str] = (),
    disputed: bool = False,
    promoter_contacts_before: int,
    rules: RoutingRules,
    returned: Collection[str] = (),
) -> Routing:
    """`speech`: the stored report (analysis_task.speech: "verdict", "checks"); `flags`: the contact's voice
    flag kinds; `returned`: the project's scorecard criteria handed back to people (models.CriterionReturn).
    Every reason that applies is listed, so the audit comparison and the card can say why."""
    verdict = speech.get("verdict") or {}
    decision = verdict.get("decision")
    reasons = [f"flag:{kind}" for kind in flags]
    if decision not in ("approve", "reject"):
        reasons.append("uncertain")
    elif float(verdict.get("confidence") or 0.0) < rules.min_confidence:
        reasons.append("low_confidence")
    reasons += [
        f"critical_failed:{check.get('key')}"
        for check in speech.get("checks") or []
        if check.get("critical") and check.get("status") == "not_done"
    ]
    checked = [str(check["scorecard"]) for check in speech.get("checks") or [] if check.get("scorecard")]
    for key in dict.fromkeys(checked):
        if key in returned:
            reasons.append(f"criterion:{key}")
    if disputed:
        reasons.append("disputed")
    if promoter_contacts_before < rules.new_promoter_contacts:
        reasons.append("new_promoter")
    if in_audit(contact_id, rules.audit_share):
        reasons.append("audit")
    if reasons or decision not in ("approve", "reject"):
        return Routing(PERSON, None, reasons)
    return Routing(AUTOMATIC, "approve" if decision == "approve" else "reject", [])


# -- criteria handed back to people and brought back -------------------------------------------------------
RETURN: Literal["return"] = "return"
RESTORE: Literal["restore"] = "restore"


@dataclass(frozen=True)
class CriterionChange:
    criterion: str  # the scorecard criterion's key
    change: Literal["return", "restore"]
    pairs: int
    agreement: float


def judge_criteria(
    measured: Mapping[str, tuple[int, float]], returned: Collection[str], rules: RoutingRules
) -> list[CriterionChange]:
    """`measured`: per criterion, (audit pairs, share agreeing), counted only since the criterion last
    changed hands, so the evidence that returned it never brings it back. A criterion the machine decides
    goes back to people below the bar; a returned one comes back at or above it; either only on at least
    `criterion_min_pairs` pairs (fewer say nothing)."""
    changes = []
    for key, (pairs, agreement) in sorted(measured.items()):
        if pairs < rules.criterion_min_pairs:
            continue
        if key not in returned and agreement < rules.criterion_bar:
            changes.append(CriterionChange(key, RETURN, pairs, agreement))
        elif key in returned and agreement >= rules.criterion_bar:
            changes.append(CriterionChange(key, RESTORE, pairs, agreement))
    return changes
