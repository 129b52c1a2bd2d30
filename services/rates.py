"""Rates drawn from two counters of one object (approved of reviewed, confirmed of flagged), declared once
each instead of a property apiece."""

from __future__ import annotations

from typing import Any, overload


class Share:
    """`part / whole` of two numeric attributes of the same object, None while the whole is 0: a rate of
    nothing is unknown, not 0 %. Read-only, computed on each read, so it follows the counters."""

    def __init__(self, part: str, whole: str) -> None:
        self.part = part
        self.whole = whole

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Share: ...
    @overload
    def __get__(self, obj: object, owner: type[Any]) -> float | None: ...
    def __get__(self, obj: object | None, owner: type[Any]) -> Share | float | None:
        if obj is None:
            return self
        whole = getattr(obj, self.whole)
        return getattr(obj, self.part) / whole if whole else None
