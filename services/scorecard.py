"""Per-project weighted scorecard: criteria (yes/no or 0..N), critical items, verdict rules, the score."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models import Verdict
from services.forms import Localized, require_unique_keys

Marks = dict[str, int]  # criterion key -> 0/1 for yes/no, 0..max for a scale


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,24}$")]
    text: Localized
    type: Literal["yes_no", "scale"] = "yes_no"
    max: Annotated[int, Field(ge=1, le=10)] = 1
    weight: Annotated[float, Field(gt=0, le=100)] = 1.0
    critical: bool = False  # failing it fails the contact outright

    @model_validator(mode="after")
    def _yes_no_max(self) -> Criterion:
        if self.type == "yes_no":
            self.max = 1
        return self

    def failed(self, value: int) -> bool:
        return value == 0


class Scorecard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    criteria: Annotated[list[Criterion], Field(min_length=1, max_length=12)]
    comment_required: list[Verdict] = Field(default_factory=lambda: [Verdict.REJECT, Verdict.FRAUD])

    @model_validator(mode="after")
    def _unique(self) -> Scorecard:
        require_unique_keys(self.criteria, "criterion")
        return self

    def score(self, marks: Marks) -> float:
        """Weighted percent; 0 when a critical criterion failed."""
        if self.critical_failed(marks):
            return 0.0
        total = sum(c.weight for c in self.criteria)
        got = sum(c.weight * marks.get(c.key, 0) / c.max for c in self.criteria)
        return round(100.0 * got / total, 1)

    def critical_failed(self, marks: Marks) -> list[Criterion]:
        return [c for c in self.criteria if c.critical and c.key in marks and c.failed(marks[c.key])]

    def failed(self, marks: Marks) -> list[Criterion]:
        return [c for c in self.criteria if c.key in marks and c.failed(marks[c.key])]

    def missing(self, marks: Marks) -> list[Criterion]:
        return [c for c in self.criteria if c.key not in marks]

    def valid_mark(self, index: int, value: int) -> bool:
        return 0 <= index < len(self.criteria) and 0 <= value <= self.criteria[index].max


class ScorecardError(Exception):
    pass


def parse_scorecard(raw: Any) -> Scorecard:
    try:
        return Scorecard.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or 'scorecard'}: {e['msg']}" for e in exc.errors()]
        raise ScorecardError("\n".join(lines)) from None


DEFAULT_SCORECARD: dict[str, Any] = {
    "criteria": [
        {"key": "greeting", "text": {"ru": "Приветствие", "en": "Greeting"}, "weight": 1},
        {
            "key": "presentation",
            "type": "scale",
            "max": 3,
            "weight": 3,
            "text": {"ru": "Презентация продукта", "en": "Product presentation"},
        },
        {"key": "offer", "text": {"ru": "Предложение купить", "en": "Asked for the sale"}, "weight": 2},
        {"key": "politeness", "text": {"ru": "Вежливость", "en": "Politeness"}, "weight": 1},
        {
            "key": "real_customer",
            "text": {"ru": "Настоящий покупатель", "en": "Real customer"},
            "weight": 2,
            "critical": True,
        },
    ]
}


def scorecard_of(raw: dict[str, Any] | None) -> Scorecard:
    return parse_scorecard(raw or DEFAULT_SCORECARD)
