"""Form progress: what each press or typed answer does to a promoter's place in the form (no database, no bot)."""

from __future__ import annotations

from typing import Any

import pytest

from services.form_progress import FormAction, FormProgress, Outcome, PhoneStep
from services.forms import AnswerError, parse_form


def options(*keys: str) -> list[dict[str, Any]]:
    """A question's options as the form settings list them, each labelled with its key capitalised."""
    return [{"key": key, "text": {"en": key.capitalize()}} for key in keys]


SCHEMA = parse_form(
    {
        "questions": [
            {
                "key": "product",
                "type": "choice",
                "text": {"en": "Product?"},
                "options": options("tea", "coffee"),
            },
            {
                "key": "extras",
                "type": "multi",
                "text": {"en": "Extras?"},
                "options": options("milk", "sugar", "lemon"),
            },
            {"key": "bought", "type": "yes_no", "text": {"en": "Bought?"}},
            {"key": "age", "type": "number", "text": {"en": "Age?"}, "min": 14, "max": 120, "optional": True},
            {"key": "phone", "type": "phone", "text": {"en": "Phone?"}},
        ]
    }
)


def sealed(value: str) -> str:
    return f"sealed({value})"


def test_a_whole_form_answered_in_order() -> None:
    progress = FormProgress(project_id=7)
    assert progress.press(SCHEMA, FormAction.PICK, 1) == Outcome.ADVANCE
    assert progress.press(SCHEMA, FormAction.TOGGLE, 2) == Outcome.STAY
    assert progress.press(SCHEMA, FormAction.TOGGLE, 0) == Outcome.STAY
    assert progress.press(SCHEMA, FormAction.DONE, 0) == Outcome.ADVANCE
    assert progress.press(SCHEMA, FormAction.PICK, 1) == Outcome.ADVANCE
    progress.type_answer(SCHEMA, "35", sealed)
    assert progress.expects_buttons(SCHEMA)  # a phone number only after the customer's consent
    assert progress.press(SCHEMA, FormAction.CONSENT, 1) == Outcome.STAY
    assert progress.phone_step == PhoneStep.NUMBER and not progress.expects_buttons(SCHEMA)
    progress.type_answer(SCHEMA, "+7 (912) 345-67-89", sealed)
    assert progress.finished(SCHEMA) and progress.question(SCHEMA) is None
    assert progress.answers == {
        "product": "coffee",
        "extras": ["milk", "lemon"],  # in the form's order, not the order pressed
        "bought": True,
        "age": 35,
        "phone": {"consent": True, "number": "sealed(+79123456789)"},  # never held unsealed
    }


def test_a_required_multiple_choice_needs_one_option() -> None:
    progress = FormProgress(project_id=7, index=1)
    assert progress.press(SCHEMA, FormAction.DONE, 0) == Outcome.NEED_ONE
    assert progress.index == 1
    progress.press(SCHEMA, FormAction.TOGGLE, 1)
    progress.press(SCHEMA, FormAction.TOGGLE, 1)  # toggled off again
    assert progress.press(SCHEMA, FormAction.DONE, 0) == Outcome.NEED_ONE


@pytest.mark.parametrize(
    ("index", "action", "value"),
    [
        (0, FormAction.PICK, 2),  # no third option
        (0, FormAction.TOGGLE, 0),  # a single choice has no toggles
        (0, FormAction.SKIP, 0),  # a required question
        (2, FormAction.PICK, 2),  # yes/no is 0 or 1
        (4, FormAction.CONSENT, 3),
        (5, FormAction.PICK, 0),  # past the last question
    ],
)
def test_a_stale_or_forged_press_changes_nothing(index: int, action: FormAction, value: int) -> None:
    progress = FormProgress(project_id=7, index=index, answers={"product": "tea"})
    before = progress.to_state()
    assert progress.press(SCHEMA, action, value) == Outcome.INVALID
    assert progress.to_state() == before


def test_back_takes_the_answer_back_and_keeps_ticked_options() -> None:
    progress = FormProgress(project_id=7, index=2, answers={"product": "tea", "extras": ["sugar"]})
    assert progress.back(SCHEMA)
    assert progress.index == 1 and "extras" not in progress.answers and progress.multi == ["sugar"]
    assert progress.back(SCHEMA) and progress.index == 0 and progress.answers == {}
    assert not progress.back(SCHEMA)


def test_an_optional_question_may_be_skipped_and_a_declined_phone_keeps_no_number() -> None:
    progress = FormProgress(project_id=7, index=3)
    assert progress.press(SCHEMA, FormAction.SKIP, 0) == Outcome.ADVANCE
    assert progress.press(SCHEMA, FormAction.CONSENT, 0) == Outcome.ADVANCE
    assert progress.answers == {"age": None, "phone": {"consent": False}}


@pytest.mark.parametrize(
    ("text", "key"), [("many", "form-error-number"), ("nan", "form-error-number"), ("7", "form-error-range")]
)
def test_a_typed_answer_that_does_not_fit_is_refused_with_a_reason(text: str, key: str) -> None:
    progress = FormProgress(project_id=7, index=3)
    with pytest.raises(AnswerError) as refused:
        progress.type_answer(SCHEMA, text, sealed)
    assert refused.value.key == key
    assert progress.index == 3 and progress.answers == {}


def test_the_state_round_trips_and_foreign_state_is_no_form() -> None:
    progress = FormProgress(project_id=7, index=4, answers={"product": "tea"}, phone_step=PhoneStep.NUMBER)
    assert FormProgress.from_state(progress.to_state()) == progress
    foreign: list[dict[str, Any]] = [{}, {"project_id": "7", "index": 0}, {"project_id": 7}]
    assert [FormProgress.from_state(data) for data in foreign] == [None, None, None]
    odd = FormProgress.from_state({"project_id": 7, "index": 1, "phone_step": "bogus"})
    assert odd is not None and odd.phone_step is None
