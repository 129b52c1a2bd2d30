"""The common base of the services' refusals (a recording, a review, a dispute, an invite, a survey): each
carries its reason as a code, which the handlers turn into a text in the user's language."""

from __future__ import annotations

from enum import StrEnum
from typing import Generic, TypeVar

P = TypeVar("P", bound=StrEnum)


class ProblemError(Exception, Generic[P]):
    """A refusal whose `problem` says why; its value is also the exception's message (for the logs)."""

    def __init__(self, problem: P) -> None:
        super().__init__(problem.value)
        self.problem: P = problem
