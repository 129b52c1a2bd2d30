"""Exports for managers and billing: what the client pays for, and every contact, as XLSX or CSV.

Rows are streamed from the database (server-side cursor, `yield_per`) into the file: openpyxl's write-only
workbook keeps each row only until it is written, so a million contacts fit in a few tens of megabytes
(bench/export_bench.py measures it). Progress is reported through a callback every PROGRESS_EVERY rows.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from models import Contact, ContactStatus, NpsAnswer, NpsSurvey, Project, User, Verdict

PROGRESS_EVERY = 50_000
Progress = Callable[[int], Awaitable[None]]

# "Validated" = what the client pays for: approved (not rejected, not fraud), and not under dispute now.
VALIDATED = (Contact.final_verdict == Verdict.APPROVE) & Contact.status.in_(
    [ContactStatus.REVIEWED, ContactStatus.FINAL]
)


@dataclass(frozen=True)
class Column:
    title: str
    width: int
    number_format: str | None = None


BILLING_COLUMNS = (
    Column("Date", 12, "yyyy-mm-dd"),
    Column("Promoter", 28),
    Column("Promoter Telegram id", 20, "0"),
    Column("Store", 28),
    Column("Validated contacts", 18, "#,##0"),
)
CONTACT_COLUMNS = (
    Column("Contact", 10, "0"),
    Column("Submitted (local)", 20, "yyyy-mm-dd hh:mm"),
    Column("Promoter", 28),
    Column("Store", 28),
    Column("Status", 12),
    Column("Verdict", 10),
    Column("Score", 8, "0.0"),
    Column("Validated", 10),
    Column("Customer score", 14, "0"),
)


def period(project: Project, start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end] local days as a UTC half-open range."""
    zone = ZoneInfo(project.timezone)
    first = dt.datetime.combine(start, dt.time(0), zone).astimezone(dt.UTC)
    last = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), zone).astimezone(dt.UTC)
    return first, last


def offset_spans(
    zone: ZoneInfo, first: dt.datetime, last: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime, int]]:
    """[first, last) cut where the zone's UTC offset changes: (from, to, offset in seconds). Within a span
    a local day is the UTC time shifted by one constant, which the database can group by."""

    def offset(at: dt.datetime) -> int:
        delta = at.astimezone(zone).utcoffset()
        return int(delta.total_seconds()) if delta else 0

    spans: list[tuple[dt.datetime, dt.datetime, int]] = []
    begin, current = first, offset(first)
    cursor = first
    while cursor < last:
        step = min(last, cursor + dt.timedelta(hours=6))
        if offset(step) != current or step == last:
            if offset(step) != current:  # a transition inside (cursor, step]: find it to the minute
                low, high = cursor, step
                while high - low > dt.timedelta(minutes=1):
                    middle = low + (high - low) / 2
                    low, high = (middle, high) if offset(middle) == current else (low, middle)
                spans.append((begin, high, current))
                begin, current = high, offset(high)
            if step == last:
                spans.append((begin, last, current))
        cursor = step
    return [span for span in spans if span[0] < span[1]]


def _local_date(connection: AsyncConnection, seconds: int) -> Any:
    """SQL for the local date of Contact.submitted_at at a fixed UTC offset."""
    if connection.dialect.name == "postgresql":
        shifted = func.timezone("UTC", Contact.submitted_at) + dt.timedelta(seconds=seconds)
        return cast(shifted, Date)
    return func.date(Contact.submitted_at, f"{seconds:+d} seconds")


async def billing_rows(
    connection: AsyncConnection, project: Project, start: dt.date, end: dt.date
) -> AsyncIterator[tuple[Any, ...]]:
    """(local day, promoter, telegram id, store, validated count), by day, promoter and store: grouped by
    the database, one query per stretch of constant UTC offset (a DST change splits the period)."""
    first, last = period(project, start, end)
    store = func.coalesce(Contact.form_answers["store"].as_string(), "—")
    counts: dict[tuple[dt.date, int, str], int] = {}
    for span_from, span_to, seconds in offset_spans(ZoneInfo(project.timezone), first, last):
        day = _local_date(connection, seconds)
        grouped = (
            select(day, Contact.promoter_id, store, func.count())
            .where(
                Contact.project_id == project.id,
                Contact.submitted_at >= span_from,
                Contact.submitted_at < span_to,
                VALIDATED,
            )
            .group_by(day, Contact.promoter_id, store)
        )
        for local, promoter_id, shop, n in (await connection.execute(grouped)).all():
            key = (
                local if isinstance(local, dt.date) else dt.date.fromisoformat(str(local)),
                int(promoter_id),
                str(shop),
            )
            counts[key] = counts.get(key, 0) + int(n)
    names: dict[int, tuple[str, int]] = {}
    ids = sorted({promoter_id for _day, promoter_id, _store in counts})
    for chunk in range(0, len(ids), 500):
        people = await connection.execute(
            select(User.id, User.first_name, User.last_name, User.telegram_id).where(
                User.id.in_(ids[chunk : chunk + 500])
            )
        )
        for user_id, first_name, last_name, telegram_id in people.all():
            names[user_id] = (" ".join(p for p in (first_name, last_name) if p), telegram_id)
    for (day_, user_id, shop), count in sorted(
        counts.items(), key=lambda kv: (kv[0][0], names[kv[0][1]][0], kv[0][2])
    ):
        name, telegram_id = names[user_id]
        yield day_, name, telegram_id, shop, count


async def contact_rows(
    connection: AsyncConnection, project: Project, start: dt.date, end: dt.date
) -> AsyncIterator[tuple[Any, ...]]:
    first, last = period(project, start, end)
    zone = ZoneInfo(project.timezone)
    query = (
        select(
            Contact.id,
            Contact.submitted_at,
            User.first_name,
            User.last_name,
            Contact.form_answers,
            Contact.status,
            Contact.final_verdict,
            Contact.score,
            VALIDATED,
            NpsAnswer.score,
        )
        .join(User, User.id == Contact.promoter_id)
        .outerjoin(NpsSurvey, NpsSurvey.contact_id == Contact.id)
        .outerjoin(NpsAnswer, NpsAnswer.survey_id == NpsSurvey.id)
        .where(Contact.project_id == project.id, Contact.submitted_at >= first, Contact.submitted_at < last)
        .order_by(Contact.id)
        .execution_options(yield_per=5000)
    )
    async for row in await connection.stream(query):
        cid, submitted, first_name, last_name, answers, status, verdict, score, validated, nps = row
        name = " ".join(p for p in (first_name, last_name) if p)
        local = submitted.astimezone(zone).replace(tzinfo=None)
        store = str((answers or {}).get("store") or "—")
        yield (
            cid,
            local,
            name,
            store,
            str(status),
            str(verdict or ""),
            score,
            "yes" if validated else "no",
            nps,
        )


class XlsxSink:
    """A real spreadsheet: bold frozen header, widths, number formats, and a totals row (a SUM formula)."""

    def __init__(
        self, path: Path, title: str, columns: tuple[Column, ...], total_column: int | None = None
    ) -> None:
        from openpyxl import Workbook
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        self.path, self.columns, self.total_column = path, columns, total_column
        self.workbook = Workbook(write_only=True)
        self.sheet = self.workbook.create_sheet(title[:31])
        for index, column in enumerate(columns, start=1):
            self.sheet.column_dimensions[get_column_letter(index)].width = column.width
        self.sheet.freeze_panes = "A2"
        self.bold = Font(bold=True)
        self.sheet.append([self._cell(c.title, header=True) for c in columns])
        self.count = 0

    def _cell(self, value: Any, column: Column | None = None, *, header: bool = False) -> Any:
        from openpyxl.cell import WriteOnlyCell

        written = WriteOnlyCell(self.sheet, value=value)
        if header:
            written.font = self.bold
        elif column is not None and column.number_format and value is not None:
            written.number_format = column.number_format
        return written

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        formatted = [c.number_format is not None for c in self.columns]
        for row in rows:  # plain values where no format is needed: a styled cell costs several times more
            self.sheet.append(
                [
                    self._cell(v, c) if fmt and v is not None else v
                    for v, c, fmt in zip(row, self.columns, formatted, strict=True)
                ]
            )
        self.count += len(rows)

    def close(self) -> None:
        from openpyxl.utils import get_column_letter

        if self.total_column is not None:
            letter = get_column_letter(self.total_column + 1)
            totals: list[Any] = [self._cell("Total", header=True)] + [None] * (len(self.columns) - 1)
            formula = f"=SUM({letter}2:{letter}{self.count + 1})"
            totals[self.total_column] = self._cell(formula, header=True)
            self.sheet.append(totals)
        self.workbook.save(self.path)


class CsvSink:
    def __init__(self, path: Path, columns: tuple[Column, ...]) -> None:
        self.handle = path.open("w", newline="", encoding="utf-8-sig")  # the BOM makes Excel read UTF-8
        self.writer = csv.writer(self.handle)
        self.writer.writerow([c.title for c in columns])
        self.count = 0

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            self.writer.writerow(
                ["" if v is None else v.isoformat() if hasattr(v, "isoformat") else v for v in row]
            )
        self.count += len(rows)

    def close(self) -> None:
        self.handle.close()


Sink = XlsxSink | CsvSink
CHUNK = 5000


async def export(rows: AsyncIterator[tuple[Any, ...]], sink: Sink, progress: Progress | None = None) -> int:
    """Stream rows into the file; the writing runs in a thread, chunk by chunk, so the bot stays responsive."""
    batch: list[tuple[Any, ...]] = []
    reported = 0
    async for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK:
            await asyncio.to_thread(sink.write, batch)
            batch = []
            if progress is not None and sink.count - reported >= PROGRESS_EVERY:
                reported = sink.count
                await progress(sink.count)
    if batch:
        await asyncio.to_thread(sink.write, batch)
    await asyncio.to_thread(sink.close)
    return sink.count
