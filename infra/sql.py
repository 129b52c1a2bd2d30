"""Small portable SQL helpers for SQLite and PostgreSQL.

The hot paths (every update claims itself, leaves the inbox, reads and writes its conversation) use Core
statements on the mapped tables, built once and given their values as parameters: an ORM-enabled INSERT
or DELETE, built anew per call, cost more Python than the statement cost SQLite (the bot's profile under
load: SQLAlchemy was the largest share of each update, docs/benchmarks.md).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Delete, Insert, Table, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase


def table_of(model: type[DeclarativeBase]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


@functools.cache
def _insert_ignore(model: type[DeclarativeBase], dialect: str, conflict: tuple[str, ...]) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table_of(model)).on_conflict_do_nothing(index_elements=list(conflict))


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def insert_ignore(
    session: AsyncSession, model: type[DeclarativeBase], values: dict[str, Any], conflict: list[str]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if a row was inserted. Safe when concurrent updates race."""
    statement = _insert_ignore(model, dialect_of(session), tuple(conflict))
    result = await session.execute(statement, values)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def insert_many_ignore(
    session: AsyncSession, model: type[DeclarativeBase], rows: Sequence[dict[str, Any]], conflict: list[str]
) -> None:
    """`insert_ignore` for a batch, in one call to the driver (executemany)."""
    if rows:
        await session.execute(_insert_ignore(model, dialect_of(session), tuple(conflict)), list(rows))


@functools.cache
def delete_by(model: type[DeclarativeBase], *columns: str) -> Delete:
    """DELETE ... WHERE each column = :column, built once; execute it with the values as parameters."""
    table = table_of(model)
    return delete(table).where(*(table.c[name] == bindparam(name) for name in columns))
