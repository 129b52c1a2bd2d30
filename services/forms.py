"""Per-project contact forms, defined as data (YAML/JSON) and validated here, and the logic of answering them.

A form is a list of questions; types: choice (one button), multi (toggle buttons, then Done), number,
text (short), yes_no, phone (asks the customer's consent first; the number only with consent).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models import crypto

Localized = dict[Literal["ru", "en"], Annotated[str, Field(min_length=1, max_length=300)]]
PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{6,18}[0-9]$")


def require_unique_keys(items: Iterable[Any], what: str) -> None:
    """Answers and marks are stored by key: two questions, options or criteria sharing one would overwrite
    each other."""
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{what} keys must be unique")


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")]
    text: Localized


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")]
    type: Literal["choice", "multi", "number", "text", "yes_no", "phone"]
    text: Localized
    options: list[Option] = Field(default_factory=list, max_length=12)
    optional: bool = False
    min: float | None = None
    max: float | None = None
    max_length: Annotated[int, Field(ge=1, le=1000)] = 200

    @model_validator(mode="after")
    def _consistent(self) -> Question:
        if self.type in ("choice", "multi") and len(self.options) < 2:
            raise ValueError(f"question {self.key!r}: {self.type} needs at least 2 options")
        if self.type not in ("choice", "multi") and self.options:
            raise ValueError(f"question {self.key!r}: options are only for choice and multi")
        require_unique_keys(self.options, f"question {self.key!r}: option")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"question {self.key!r}: min is greater than max")
        return self


class FormSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    questions: Annotated[list[Question], Field(min_length=1, max_length=30)]

    @model_validator(mode="after")
    def _unique_keys(self) -> FormSchema:
        require_unique_keys(self.questions, "question")
        return self


class FormSchemaError(Exception):
    """A bad form file, with one readable line per problem."""


def parse_form(raw: Any) -> FormSchema:
    try:
        return FormSchema.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "form"
            lines.append(f"{where}: {error['msg']}")
        raise FormSchemaError("\n".join(lines)) from None


def load_form_file(path: Path) -> FormSchema:
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise FormSchemaError(
            f"{path.name}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    return parse_form(raw)


def localized(text: Mapping[Any, str], locale: str) -> str:
    return text.get(locale) or text.get("ru") or next(iter(text.values()))


DEFAULT_FORM: dict[str, Any] = {
    "questions": [
        {
            "key": "product",
            "type": "choice",
            "text": {"ru": "Что предлагали?", "en": "What did you offer?"},
            "options": [
                {"key": "coffee", "text": {"ru": "Кофе", "en": "Coffee"}},
                {"key": "tea", "text": {"ru": "Чай", "en": "Tea"}},
                {"key": "snacks", "text": {"ru": "Снеки", "en": "Snacks"}},
            ],
        },
        {
            "key": "age",
            "type": "choice",
            "text": {"ru": "Возраст покупателя", "en": "Customer's age"},
            "options": [
                {"key": "u25", "text": {"ru": "до 25", "en": "under 25"}},
                {"key": "25_45", "text": {"ru": "25–45", "en": "25–45"}},
                {"key": "o45", "text": {"ru": "старше 45", "en": "over 45"}},
            ],
        },
        {
            "key": "bought",
            "type": "yes_no",
            "text": {"ru": "Покупатель купил товар?", "en": "Did the customer buy?"},
        },
        {
            "key": "quantity",
            "type": "number",
            "min": 0,
            "max": 100,
            "text": {"ru": "Сколько штук купил?", "en": "How many items?"},
        },
        {
            "key": "phone",
            "type": "phone",
            "optional": True,
            "text": {"ru": "Телефон покупателя", "en": "Customer's phone"},
        },
    ]
}


class AnswerError(Exception):
    """The typed answer does not fit the question (the reason is a text key)."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key, self.params = key, params


def parse_typed_answer(question: Question, text: str) -> Any:
    text = text.strip()
    if question.type == "number":
        try:
            value = float(text.replace(",", "."))
        except ValueError:
            raise AnswerError("form-error-number") from None
        if not math.isfinite(value):  # float() reads "nan" and "inf"; no count or price is either
            raise AnswerError("form-error-number")
        if (question.min is not None and value < question.min) or (
            question.max is not None and value > question.max
        ):
            raise AnswerError("form-error-range", min=_num(question.min), max=_num(question.max))
        return int(value) if value.is_integer() else value
    if question.type == "text":
        if not text:
            raise AnswerError("form-error-empty")
        if len(text) > question.max_length:
            raise AnswerError("form-error-too-long", max=question.max_length)
        return text
    if question.type == "phone":
        if not PHONE_RE.match(text):
            raise AnswerError("form-error-phone")
        return normalise_phone(text)
    raise AnswerError("form-error-use-buttons")


def normalise_phone(text: str) -> str:
    digits = re.sub(r"\D", "", text)
    return f"+{digits}"


def _num(value: float | None) -> str:
    if value is None:
        return "∞"
    return str(int(value)) if float(value).is_integer() else str(value)


def describe_answers(
    schema: FormSchema, answers: dict[str, Any], locale: str, yes: str, no: str
) -> list[tuple[str, str]]:
    """(question, answer) pairs in the promoter's words, for reviewer cards."""
    described = []
    for question in schema.questions:
        if question.key not in answers:
            continue
        value = answers[question.key]
        options = {o.key: localized(o.text, locale) for o in question.options}
        if value is None:
            text = "—"
        elif question.type == "yes_no":
            text = yes if value else no
        elif question.type == "choice":
            text = options.get(value, str(value))
        elif question.type == "multi":
            text = ", ".join(options.get(v, str(v)) for v in value) or "—"
        elif question.type == "phone":
            text = (yes if value.get("consent") else no) + (
                f" ({crypto.reveal(value['number'])})" if value.get("number") else ""
            )
        else:
            text = str(value)
        described.append((localized(question.text, locale), text))
    return described
