"""The one rule for a rate drawn from two counters (approved of reviewed, confirmed of flagged)."""

from __future__ import annotations


def share(part: float, whole: float) -> float | None:
    """`part / whole`, None while the whole is 0: a rate of nothing is unknown, not 0 %."""
    return part / whole if whole else None
