"""Marks pre-filled from the speech checks (issue #25 item 5), and the stored report read back: pure."""

from __future__ import annotations

from services.scorecard import scorecard_of
from services.speech.report import ScriptCheck, SpokenLine, machine_marks, read_report

CARD = scorecard_of(None)  # greeting yes/no, presentation 0..3, offer, politeness, real_customer (critical)


def check(key: str, status: str, scorecard: str | None) -> ScriptCheck:
    return ScriptCheck(key=key, status=status, scorecard=scorecard)


def test_done_is_the_best_mark_and_not_done_the_worst() -> None:
    checks = [
        check("greeting", "done", "greeting"),
        check("presentation", "done", "presentation"),
        check("offer", "not_done", "offer"),
        check("customer_share", "not_done", "real_customer"),
    ]
    assert machine_marks(checks, CARD) == {"greeting": 1, "presentation": 3, "offer": 0, "real_customer": 0}


def test_unsure_unnamed_unknown_and_disagreeing_checks_fill_nothing() -> None:
    checks = [
        check("goodbye", "unsure", "politeness"),
        check("own", "done", None),  # names no criterion
        check("other", "done", "not_on_the_card"),
        check("product_named", "done", "presentation"),  # two checks, one criterion, different answers
        check("presentation", "not_done", "presentation"),
        check("greeting", "done", "greeting"),  # one sure and one unsure answer: the reviewer's
        check("greeting_again", "unsure", "greeting"),
    ]
    assert machine_marks(checks, CARD) == {}


def test_checks_that_agree_on_a_criterion_fill_it() -> None:
    checks = [
        check("product_named", "not_done", "presentation"),
        check("presentation", "not_done", "presentation"),
    ]
    assert machine_marks(checks, CARD) == {"presentation": 0}


def test_a_stored_report_is_read_as_it_is() -> None:
    assert read_report(None) is None
    old = {"segments": [{"start": 1, "end": 2, "speaker": "promoter", "text": "Здравствуйте"}, {"text": " "}]}
    report = read_report(old)  # written before checks carried `scorecard`, with no verdict
    assert report is not None and report.verdict is None and report.checks == []
    assert report.lines == [SpokenLine(1.0, "promoter", "Здравствуйте")]  # an empty line is no line
    stored = {
        "checks": [{"key": "greeting", "status": "done", "quote": "здрасте", "start": 0.5}],
        "verdict": {"decision": "approve", "confidence": 0.9, "leaning": "approve", "reasons": []},
    }
    report = read_report(stored)
    assert report is not None and report.verdict is not None and report.verdict.decision == "approve"
    assert report.checks == [ScriptCheck("greeting", "done", quote="здрасте", start=0.5)]
    assert machine_marks(report.checks, CARD) == {}  # no `scorecard`: nothing pre-filled
