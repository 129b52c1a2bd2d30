"""Column helpers used across model modules."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import JSON, Enum, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

P = TypeVar("P", bound=BaseModel)


def str_enum(enum_cls: type[StrEnum]) -> Enum:
    """A VARCHAR holding the enum's value: portable, and adding a member needs no ALTER TYPE."""
    return Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class PydanticJSON(TypeDecorator[P]):
    """A JSON column (JSONB on PostgreSQL) whose value is a pydantic model: validated when a row is read, its
    JSON written on save. Models kept this way are frozen: a change is a new value, which the ORM sees."""

    impl = JSON
    cache_ok = True

    def __init__(self, model: type[P]) -> None:
        super().__init__()
        self.model = model

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: P | None, dialect: Dialect) -> dict[str, Any] | None:
        return None if value is None else value.model_dump(mode="json")

    def process_result_value(self, value: Any, dialect: Dialect) -> P | None:
        return None if value is None else self.model.model_validate(value)
