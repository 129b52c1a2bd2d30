"""Who decides a contact, rule by rule (services/speech/routing.py): a pure policy, no database or bot."""

from __future__ import annotations

from typing import Any

from services.speech.routing import (
    AUTOMATIC,
    PERSON,
    RESTORE,
    RETURN,
    CriterionChange,
    RoutingRules,
    in_audit,
    judge_criteria,
    route,
)
from tests.helpers import speech_report as report

# Rules under which nothing but the report itself sends a contact to a person.
OPEN = RoutingRules(enabled=True, audit_share=0.0, new_promoter_contacts=0, min_confidence=0.75)


def routed(speech: dict[str, Any], rules: RoutingRules = OPEN, **kwargs: Any) -> tuple[str, list[str]]:
    arguments: dict[str, Any] = {"contact_id": 7, "promoter_contacts_before": 100, **kwargs}
    decided = route(speech=speech, rules=rules, **arguments)
    return decided.route, decided.reasons


def test_a_clear_verdict_is_automatic() -> None:
    decided = route(contact_id=7, speech=report(), promoter_contacts_before=100, rules=OPEN)
    assert (decided.route, decided.verdict, decided.reasons) == (AUTOMATIC, "approve", [])
    rejected = route(contact_id=7, speech=report("reject"), promoter_contacts_before=100, rules=OPEN)
    assert (rejected.route, rejected.verdict) == (AUTOMATIC, "reject")


def test_any_voice_flag_goes_to_a_person() -> None:
    assert routed(report(), flags=["no_customer"]) == (PERSON, ["flag:no_customer"])
    assert routed(report(), flags=["self_recorded", "same_customer"])[1] == [
        "flag:self_recorded",
        "flag:same_customer",
    ]


def test_every_uncertain_verdict_goes_to_a_person() -> None:
    assert routed(report("for_person", 0.95)) == (PERSON, ["uncertain"])
    assert routed(report("approve", 0.74)) == (PERSON, ["low_confidence"])
    assert routed(report("approve", 0.75))[0] == AUTOMATIC  # the bar itself is enough
    stricter = RoutingRules(enabled=True, audit_share=0.0, new_promoter_contacts=0, min_confidence=0.95)
    assert routed(report("approve", 0.9), stricter) == (PERSON, ["low_confidence"])
    assert routed({"checks": []}) == (PERSON, ["uncertain"])  # a report with no verdict decides nothing


def test_a_failed_critical_check_goes_to_a_person() -> None:
    failed = report(
        "reject",
        0.95,
        {"key": "offer", "status": "not_done", "critical": True},
        {"key": "greeting", "status": "done", "critical": False},
    )
    assert routed(failed) == (PERSON, ["critical_failed:offer"])
    optional = report("approve", 0.95, {"key": "goodbye", "status": "not_done", "critical": False})
    assert routed(optional)[0] == AUTOMATIC  # a failed non-critical item is the verdict's to weigh


def test_disputes_go_to_a_person() -> None:
    assert routed(report(), disputed=True) == (PERSON, ["disputed"])


def test_a_new_promoters_first_contacts_go_to_a_person() -> None:
    rules = RoutingRules(enabled=True, audit_share=0.0, new_promoter_contacts=5)
    assert [routed(report(), rules, promoter_contacts_before=n)[0] for n in range(7)] == [PERSON] * 5 + [
        AUTOMATIC
    ] * 2
    assert routed(report(), rules, promoter_contacts_before=0)[1] == ["new_promoter"]


def test_the_audit_share_is_deterministic_and_near_its_share() -> None:
    drawn = [n for n in range(1, 10_001) if in_audit(n, 0.10)]
    assert 900 <= len(drawn) <= 1100  # the default tenth, evenly spread
    assert drawn == [n for n in range(1, 10_001) if in_audit(n, 0.10)]  # the same contacts every time
    assert not any(in_audit(n, 0.0) for n in range(1, 1000)) and all(in_audit(n, 1.0) for n in range(1, 1000))
    rules = RoutingRules(enabled=True, audit_share=0.10, new_promoter_contacts=0)
    assert routed(report(), rules, contact_id=drawn[0]) == (PERSON, ["audit"])
    outside = next(n for n in range(1, 100) if n not in drawn)
    assert routed(report(), rules, contact_id=outside)[0] == AUTOMATIC


def test_every_reason_is_listed() -> None:
    rules = RoutingRules(enabled=True, audit_share=1.0, new_promoter_contacts=5)
    failed = report(
        "for_person", 0.2, {"key": "offer", "status": "not_done", "critical": True, "scorecard": "offer"}
    )
    reasons = routed(
        failed, rules, flags=["no_customer"], disputed=True, promoter_contacts_before=0, returned={"offer"}
    )[1]
    assert reasons == [
        "flag:no_customer",
        "uncertain",
        "critical_failed:offer",
        "criterion:offer",
        "disputed",
        "new_promoter",
        "audit",
    ]


def test_settings_default_to_off_and_read_the_project() -> None:
    assert RoutingRules.from_settings({}) == RoutingRules()
    assert RoutingRules() == RoutingRules(
        enabled=False, audit_share=0.10, new_promoter_contacts=5, min_confidence=0.75
    )
    assert not RoutingRules.from_settings({"routing": True}).enabled  # speech analysis itself is off
    rules = RoutingRules.from_settings(
        {
            "enabled": True,
            "routing": True,
            "audit_share": 0.25,
            "new_promoter_contacts": 3,
            "verdict": {"min_confidence": 0.8},
        }
    )
    assert rules == RoutingRules(enabled=True, audit_share=0.25, new_promoter_contacts=3, min_confidence=0.8)
    assert (
        RoutingRules.from_settings({"min_confidence": 0.9, "verdict": {"min_confidence": 0.8}}).min_confidence
        == 0.9
    )
    assert RoutingRules.from_settings({"audit_share": 7}).audit_share == 1.0
    assert (RoutingRules().criterion_bar, RoutingRules().criterion_min_pairs) == (0.9, 20)
    bar = RoutingRules.from_settings({"criterion_bar": 0.8, "criterion_min_pairs": 0})
    assert (bar.criterion_bar, bar.criterion_min_pairs) == (0.8, 1)  # at least one pair to judge on


def _checks(*keys: str | None) -> dict[str, Any]:
    return report(
        "approve", 0.95, *({"key": f"check{n}", "status": "done", "scorecard": k} for n, k in enumerate(keys))
    )


def test_a_contact_that_checks_a_returned_criterion_goes_to_a_person() -> None:
    speech = _checks("greeting", "presentation", "presentation", None)
    assert routed(speech, returned={"presentation"}) == (PERSON, ["criterion:presentation"])  # named once
    assert routed(speech, returned={"presentation", "greeting"})[1] == [
        "criterion:greeting",
        "criterion:presentation",
    ]
    # A returned criterion this report does not check leaves the machine's verdict standing.
    assert routed(speech, returned={"offer"}) == (AUTOMATIC, [])
    assert routed(speech) == (AUTOMATIC, [])


def test_criteria_are_judged_against_the_bar_only_on_enough_pairs() -> None:
    rules = RoutingRules(enabled=True, criterion_bar=0.9, criterion_min_pairs=20)
    measured = {
        "greeting": (40, 0.95),  # agrees: stays with the machine
        "offer": (20, 0.85),  # under the bar on enough pairs: back to people
        "politeness": (19, 0.10),  # under it, but too few pairs to judge
        "presentation": (25, 0.90),  # returned before, at the bar again: back to the machine
        "real_customer": (30, 0.50),  # returned before and still under: stays with people
    }
    returned = {"presentation", "real_customer"}
    assert judge_criteria(measured, returned, rules) == [
        CriterionChange("offer", RETURN, 20, 0.85),
        CriterionChange("presentation", RESTORE, 25, 0.90),
    ]
    assert judge_criteria({}, returned, rules) == []  # no pairs since they changed hands: no judgement
