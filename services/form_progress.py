"""Where a promoter stands in a project's contact form, and what each press or typed answer does to it.

Kept as a plain dict in the conversation state (database or Redis), so it survives restarts; this module
is its only reader and writer. No Telegram here: the router turns a press into a `FormAction`, calls
`press` / `back` / `type_answer`, and shows the step the progress is at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.forms import FormSchema, Question, parse_typed_answer


class FormAction(StrEnum):
    PICK = "pick"  # a choice or yes/no option
    TOGGLE = "toggle"  # one option of a multiple choice
    DONE = "done"  # end of a multiple choice
    CONSENT = "consent"  # the customer agreed (1) or not (0) to leave a phone number
    SKIP = "skip"  # an optional question
    BACK = "back"
    CANCEL = "cancel"


class Outcome(StrEnum):
    ADVANCE = "advance"  # answered: on to the next question (or to the recording)
    STAY = "stay"  # the same question, changed (an option toggled, consent given: now the number)
    NEED_ONE = "need_one"  # a required multiple choice with nothing chosen
    INVALID = "invalid"  # a stale or forged press: nothing changed


class PhoneStep(StrEnum):
    NUMBER = "number"  # consent given: the number is typed next


@dataclass
class FormProgress:
    project_id: int
    index: int = 0
    answers: dict[str, Any] = field(default_factory=dict)
    multi: list[str] = field(default_factory=list)  # options toggled on the current multiple choice
    phone_step: PhoneStep | None = None

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> FormProgress | None:
        """None when the state holds no form (cleared, or written by something else)."""
        if not isinstance(data.get("project_id"), int) or not isinstance(data.get("index"), int):
            return None
        step = data.get("phone_step")
        return cls(
            project_id=data["project_id"],
            index=data["index"],
            answers=dict(data.get("answers") or {}),
            multi=list(data.get("multi") or []),
            phone_step=PhoneStep(step) if step in {s.value for s in PhoneStep} else None,
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "index": self.index,
            "answers": self.answers,
            "multi": self.multi,
            "phone_step": self.phone_step.value if self.phone_step else None,
        }

    def finished(self, schema: FormSchema) -> bool:
        """Every question answered: the recording is what the form waits for now."""
        return self.index >= len(schema.questions)

    def question(self, schema: FormSchema) -> Question | None:
        return None if self.finished(schema) else schema.questions[self.index]

    def _advance(self) -> Outcome:
        self.index += 1
        self.multi, self.phone_step = [], None
        return Outcome.ADVANCE

    def press(self, schema: FormSchema, action: FormAction, v: int) -> Outcome:
        """One button press on the current question (not BACK or CANCEL: see `back`)."""
        question = self.question(schema)
        if question is None:
            return Outcome.INVALID
        if action == FormAction.PICK and question.type == "choice" and 0 <= v < len(question.options):
            self.answers[question.key] = question.options[v].key
            return self._advance()
        if action == FormAction.PICK and question.type == "yes_no" and v in (0, 1):
            self.answers[question.key] = bool(v)
            return self._advance()
        if action == FormAction.TOGGLE and question.type == "multi" and 0 <= v < len(question.options):
            key = question.options[v].key
            self.multi = [k for k in self.multi if k != key] if key in self.multi else [*self.multi, key]
            return Outcome.STAY
        if action == FormAction.DONE and question.type == "multi":
            if not self.multi and not question.optional:
                return Outcome.NEED_ONE
            order = [o.key for o in question.options]
            self.answers[question.key] = sorted(self.multi, key=order.index)
            return self._advance()
        if action == FormAction.CONSENT and question.type == "phone" and v in (0, 1):
            if v == 1:
                self.phone_step = PhoneStep.NUMBER
                return Outcome.STAY
            self.answers[question.key] = {"consent": False}
            return self._advance()
        if action == FormAction.SKIP and question.optional:
            self.answers[question.key] = None
            return self._advance()
        return Outcome.INVALID

    def back(self, schema: FormSchema) -> bool:
        """To the previous question, its answer taken back (a multiple choice keeps its options ticked)."""
        if self.index == 0:
            return False
        self.index -= 1
        previous = schema.questions[self.index]
        old = self.answers.pop(previous.key, None)
        self.multi = list(old) if previous.type == "multi" and isinstance(old, list) else []
        self.phone_step = None
        return True

    def expects_buttons(self, schema: FormSchema) -> bool:
        """The current question is answered by its buttons (a phone number only after the consent press)."""
        question = self.question(schema)
        return question is not None and question.type == "phone" and self.phone_step != PhoneStep.NUMBER

    def type_answer(self, schema: FormSchema, text: str, seal: Any) -> None:
        """A typed answer to the current question; raises services.forms.AnswerError. `seal` encrypts a
        phone number at once: the form's state and the contact only ever hold it sealed."""
        question = self.question(schema)
        assert question is not None
        value = parse_typed_answer(question, text)
        self.answers[question.key] = (
            {"consent": True, "number": seal(value)} if question.type == "phone" else value
        )
        self._advance()
