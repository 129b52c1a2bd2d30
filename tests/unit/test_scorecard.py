"""Review marks: the weighted score, critical criteria and what a press may set (no database, no bot)."""

from __future__ import annotations

import pytest

from services.scorecard import DEFAULT_SCORECARD, ScorecardError, parse_scorecard, scorecard_of


def test_the_score_is_weighted_by_each_criterion_and_its_scale() -> None:
    card = scorecard_of(
        None
    )  # greeting 1, presentation 0..3 x3, offer 2, politeness 1, real_customer 2 (critical)
    marks = {"greeting": 1, "presentation": 2, "offer": 0, "politeness": 1, "real_customer": 1}
    # (1 + 3 * 2/3 + 0 + 1 + 2) / 9 = 6 / 9
    assert card.score(marks) == pytest.approx(66.7)
    assert [c.key for c in card.failed(marks)] == ["offer"]
    assert card.missing(marks) == []


def test_a_failed_critical_criterion_fails_the_contact_outright() -> None:
    card = scorecard_of(DEFAULT_SCORECARD)
    marks = {"greeting": 1, "presentation": 3, "offer": 1, "politeness": 1, "real_customer": 0}
    assert card.score(marks) == 0.0
    assert [c.key for c in card.critical_failed(marks)] == ["real_customer"]


def test_unmarked_criteria_are_missing_and_count_as_nothing() -> None:
    card = scorecard_of(None)
    marks = {"greeting": 1}
    assert [c.key for c in card.missing(marks)] == ["presentation", "offer", "politeness", "real_customer"]
    assert card.critical_failed(marks) == []  # not marked yet is not failed
    assert card.score(marks) == pytest.approx(11.1)


def test_a_press_may_only_set_a_value_its_criterion_has() -> None:
    card = scorecard_of(None)
    assert card.valid_mark(1, 3) and card.valid_mark(0, 0)
    assert not card.valid_mark(0, 2)  # yes/no is 0 or 1
    assert not card.valid_mark(1, 4)  # the scale's max is 3
    assert not card.valid_mark(5, 1) and not card.valid_mark(-1, 1)  # no such criterion (a forged button)


def test_a_yes_no_criterion_keeps_max_one_whatever_the_file_says() -> None:
    card = parse_scorecard({"criteria": [{"key": "a", "text": {"en": "A"}, "max": 5}]})
    assert card.criteria[0].max == 1


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"criteria": []}, "criteria"),
        ({"criteria": [{"key": "a", "text": {"en": "A"}}, {"key": "a", "text": {"en": "B"}}]}, "unique"),
        ({"criteria": [{"key": "Bad Key", "text": {"en": "A"}}]}, "criteria.0.key"),
        ({"criteria": [{"key": "a", "text": {"en": "A"}, "weight": 0}]}, "weight"),
    ],
)
def test_a_bad_scorecard_says_where(raw: dict[str, object], says: str) -> None:
    with pytest.raises(ScorecardError, match=says):
        parse_scorecard(raw)
