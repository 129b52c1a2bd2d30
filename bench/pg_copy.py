"""Copy a benchmark's SQLite database into a fresh PostgreSQL database (same schema, through Alembic), so
the same figures can be measured on both engines.

    .venv/bin/python bench/pg_copy.py SQLITE_FILE postgresql://postgres@127.0.0.1:5432/bench_digest
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TABLES = ("organisation", "project", "user_account", "contact", "assignment", "review", "digest_log")


def _convert(value: Any, pg_type: str) -> Any:
    if value is None:
        return None
    if pg_type == "boolean":
        return bool(value)
    if pg_type.startswith("timestamp"):
        parsed = dt.datetime.fromisoformat(str(value))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    if pg_type == "date":
        return dt.date.fromisoformat(str(value))
    if pg_type.startswith("time"):
        return dt.time.fromisoformat(str(value))
    if pg_type in ("double precision", "real", "numeric"):
        return float(value)
    return value


async def copy(sqlite_file: Path, url: str) -> None:
    import asyncpg

    from bot.migrate import upgrade

    admin_url, name = url.rsplit("/", 1)
    admin = await asyncpg.connect(f"{admin_url}/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    await asyncio.to_thread(upgrade, url.replace("postgresql://", "postgresql+asyncpg://"))
    source = sqlite3.connect(sqlite_file)
    target = await asyncpg.connect(url)
    for table in TABLES:
        types = dict(
            await target.fetch(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1", table
            )
        )
        cursor = source.execute(f"SELECT * FROM {table}")
        columns = [d[0] for d in cursor.description]
        started, copied = time.perf_counter(), 0
        while rows := cursor.fetchmany(50_000):
            records = [
                tuple(_convert(v, types[c]) for v, c in zip(row, columns, strict=True)) for row in rows
            ]
            await target.copy_records_to_table(table, records=records, columns=columns)
            copied += len(records)
        if copied and "id" in columns:
            await target.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        print(f"{table}: {copied} rows in {time.perf_counter() - started:.0f} s", flush=True)
    await target.execute("ANALYZE")
    await target.close()


if __name__ == "__main__":
    asyncio.run(copy(Path(sys.argv[1]), sys.argv[2]))
