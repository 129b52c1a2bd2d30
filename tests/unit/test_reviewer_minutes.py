"""voicelab.reviewer_minutes: the reviewer-minutes benchmark's arithmetic on fixed result lines."""

from __future__ import annotations

from typing import Any

from services.speech.routing import in_audit
from voicelab.reviewer_minutes import measure

CHECKS = {
    "greeting": "done",
    "product_named": "done",
    "presentation": "done",
    "ask_for_sale": "done",
    "goodbye": "done",
    "customer_share": "done",
}


def _row(index: int, decision: str, *, flags: list[str] | None = None, **checks: str) -> dict[str, Any]:
    return {
        "index": index,
        "duration": 60.0,
        "decision": decision,
        "confidence": 0.95,
        "leaning": "approve" if decision == "for_person" else decision,
        "checks": CHECKS | checks,
        "flags": flags or [],
        "truth_verdict": "approve",
    }


def test_only_what_routing_sends_to_a_person_costs_reviewer_minutes() -> None:
    ids = [i for i in range(200) if not in_audit(i + 1, 0.1)][:4]  # out of the audit sample
    rows = [
        _row(ids[0], "approve"),
        _row(ids[1], "reject"),  # decided, against the truth
        _row(ids[2], "for_person"),
        _row(ids[3], "approve", flags=["no_customer"]),
    ]
    found = measure(rows, audit_share=0.1, overhead=2.0)
    assert found["routing_off"] == {"to_people": 4, "reviewer_minutes_per_1000": 3000.0}
    on = found["routing_on"]
    assert (on["to_people"], on["decided_automatically"], on["automatic_wrong_against_truth"]) == (2, 2, 1)
    assert on["reviewer_minutes_per_1000"] == 1500.0
    assert on["why_to_people"] == {"uncertain": 1, "flag": 1}
    assert found["ratio_on_to_off"] == 0.5


def test_a_failed_critical_check_and_the_audit_sample_go_to_people() -> None:
    audited = next(i for i in range(200) if in_audit(i + 1, 0.1))
    settled = next(i for i in range(200) if not in_audit(i + 1, 0.1))
    rows = [_row(audited, "approve"), _row(settled, "approve", customer_share="not_done")]
    on = measure(rows, audit_share=0.1, overhead=2.0)["routing_on"]
    assert on["to_people"] == 2
    assert on["why_to_people"] == {"audit": 1, "critical_failed": 1}
