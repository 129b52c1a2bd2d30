"""Who decides a contact: the machine (its speech verdict stands) or a person (issue #25 item 4).

A pure policy over what is already known when a queued contact would go to a reviewer, so that it can be
tested rule by rule and replayed over stored analyses. A person gets every contact with a voice flag
(a suspicion only a person may turn into an accusation), every uncertain verdict (for_person, or a
confidence under the project's bar), a failed critical check, a disputed contact, a new promoter's first
contacts, and a deterministic audit share, whose reviews are what the automatic verdicts are measured
against. Off unless the project's speech settings say "routing": true.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.speech.verdict import VerdictRules

AUTOMATIC: Literal["automatic"] = "automatic"
PERSON: Literal["person"] = "person"
Route = Literal["automatic", "person"]

DEFAULT_AUDIT_SHARE = 0.10
DEFAULT_NEW_PROMOTER_CONTACTS = 5


@dataclass(frozen=True)
class RoutingRules:
    enabled: bool = False
    audit_share: float = DEFAULT_AUDIT_SHARE
    new_promoter_contacts: int = DEFAULT_NEW_PROMOTER_CONTACTS
    min_confidence: float = VerdictRules().min_confidence

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> RoutingRules:
        """From project.speech_settings: "routing", "audit_share", "new_promoter_contacts", "min_confidence"
        (the last falls back to the verdict's own bar, speech_settings["verdict"]["min_confidence"])."""
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
) -> Routing:
    """`speech`: the stored report (analysis_task.speech: "verdict", "checks"); `flags`: the contact's voice
    flag kinds. Every reason that applies is listed, so the audit comparison and the card can say why."""
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
    if disputed:
        reasons.append("disputed")
    if promoter_contacts_before < rules.new_promoter_contacts:
        reasons.append("new_promoter")
    if in_audit(contact_id, rules.audit_share):
        reasons.append("audit")
    if reasons or decision not in ("approve", "reject"):
        return Routing(PERSON, None, reasons)
    return Routing(AUTOMATIC, "approve" if decision == "approve" else "reject", [])
