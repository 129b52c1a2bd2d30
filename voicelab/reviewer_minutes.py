"""Reviewer-minutes with routing off and on over bench/speech_eval.py's per-dialogue results (issue #25).

The production routing policy (services.speech.routing.route) is applied to each result line as a project's
default rules would; a reviewer's contact costs what services.capacity assumes when nothing is measured (the
recording once, plus capacity.OVERHEAD_MINUTES). Promoters are taken as settled; a contact's id is its
index + 1, which fixes the deterministic audit sample. bench/reviewer_minutes.py prints it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.speech.routing import PERSON, RoutingRules, route
from services.speech.script import rules_from
from voicelab import speech_eval


def speech_of(row: dict[str, Any], critical: set[str]) -> dict[str, Any]:
    """The stored speech report's routing-relevant part, rebuilt from one result line."""
    return {
        "verdict": {"decision": row["decision"], "confidence": row["confidence"], "leaning": row["leaning"]},
        "checks": [
            {"key": key, "status": status, "critical": key in critical}
            for key, status in row["checks"].items()
        ],
    }


def measure(rows: list[dict[str, Any]], audit_share: float, overhead: float) -> dict[str, Any]:
    rules = RoutingRules(enabled=True, audit_share=audit_share)
    critical = {c.key for c in rules_from(None, list(speech_eval.PRODUCTS)).criteria if c.critical}
    minutes_off = minutes_on = 0.0
    to_people = automatic = wrong = 0
    reasons: Counter[str] = Counter()
    for row in rows:
        cost = row["duration"] / 60 + overhead
        minutes_off += cost
        routing = route(
            contact_id=row["index"] + 1,
            speech=speech_of(row, critical),
            flags=row["flags"],
            promoter_contacts_before=rules.new_promoter_contacts,  # settled promoters
            rules=rules,
        )
        if routing.route == PERSON:
            to_people += 1
            minutes_on += cost
            reasons.update(reason.split(":")[0] for reason in routing.reasons)
        else:
            automatic += 1
            wrong += routing.verdict != row["truth_verdict"]
    n = len(rows)
    per_1000 = 1000 / n
    mean_minutes = minutes_off / n
    return {
        "data": "bench/speech_eval.py results: synthesised Russian dialogues (festvox-ru promoter, espeak-ng "
        "customers) through the field simulation (one phone, shop noise, Opus)",
        "contacts": n,
        "mean_recording_seconds": round(sum(r["duration"] for r in rows) / n, 1),
        "overhead_minutes": overhead,
        "audit_share": audit_share,
        "routing_off": {"to_people": n, "reviewer_minutes_per_1000": round(minutes_off * per_1000, 1)},
        "routing_on": {
            "to_people": to_people,
            "decided_automatically": automatic,
            "automatic_wrong_against_truth": wrong,
            "reviewer_minutes_per_1000": round(minutes_on * per_1000, 1),
            "why_to_people": dict(reasons.most_common()),
        },
        "ratio_on_to_off": round(minutes_on / minutes_off, 3) if minutes_off else None,
        # The same shares for one-minute notes: what 1,000 of the issue's contacts would cost.
        "one_minute_notes": {
            "routing_off_minutes_per_1000": round(1000 * (1 + overhead), 1),
            "routing_on_minutes_per_1000": round(to_people * per_1000 * (1 + overhead), 1),
        },
        "mean_minutes_per_reviewed_contact": round(mean_minutes, 2),
    }
