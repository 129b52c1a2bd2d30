"""Billing and contact exports: real spreadsheets (read back with openpyxl) and CSV, counted the way the
client pays (approved, not fraud, no open dispute), and the manager's /billing through the bot."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import load_workbook
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import Runtime
from handlers.manager import period_dates
from infra import db
from models import ContactStatus, Project, Role, User, Verdict
from models.base import utcnow
from services import exports
from telegram_standin import StandIn
from telegram_standin.driver import buttons, message_text
from telegram_ui.callbacks import ExportPeriod
from tests.helpers import add_contact, join, label, seed_project, text

MOSCOW = dt.timezone(dt.timedelta(hours=3))
DAY = dt.date(2026, 11, 30)


async def seed(sessions: async_sessionmaker[AsyncSession], project: Project, day: dt.date = DAY) -> None:
    """Pavel at Store 1 on `day` (30.11): 3 approved (one of them final), 1 rejected, 1 fraud, 1 approved but
    under dispute now, 1 not reviewed yet; Olga at Store 2 the day before: 2 approved. All at 23:30 Moscow
    time."""
    async with sessions() as session, session.begin():
        pavel, olga = User(telegram_id=8001, first_name="Pavel"), User(telegram_id=8002, first_name="Olga")
        session.add_all([pavel, olga])
        await session.flush()
        plan = [
            (pavel, day, "Store 1", Verdict.APPROVE, ContactStatus.REVIEWED),
            (pavel, day, "Store 1", Verdict.APPROVE, ContactStatus.REVIEWED),
            (pavel, day, "Store 1", Verdict.APPROVE, ContactStatus.FINAL),
            (pavel, day, "Store 1", Verdict.REJECT, ContactStatus.REVIEWED),
            (pavel, day, "Store 1", Verdict.FRAUD, ContactStatus.FINAL),
            (pavel, day, "Store 1", Verdict.APPROVE, ContactStatus.DISPUTED),
            (pavel, day, "Store 1", None, ContactStatus.QUEUED),
            (olga, day - dt.timedelta(days=1), "Store 2", Verdict.APPROVE, ContactStatus.FINAL),
            (olga, day - dt.timedelta(days=1), "Store 2", Verdict.APPROVE, ContactStatus.REVIEWED),
        ]
        for person, on, store, verdict, status in plan:
            contact, _ = await add_contact(session, project.id, person.id)
            contact.submitted_at = dt.datetime.combine(on, dt.time(23, 30), MOSCOW)  # late evening, local
            contact.form_answers = {"store": store}
            contact.final_verdict, contact.status = verdict, status
            contact.score = 90.0 if verdict == Verdict.APPROVE else 20.0


def last_week_end() -> dt.date:
    """The last day of the week the manager's "last 7 days" covers today (Moscow): a seed on it and the day
    before falls inside, whatever the date the tests run on (a fixed 30.11 fell out of it on 07.12)."""
    return period_dates(ExportPeriod.WEEK, utcnow().astimezone(ZoneInfo("Europe/Moscow")).date())[1]


async def test_billing_xlsx_and_csv_count_what_the_client_pays_for(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    project = await seed_project(sessions)
    await seed(sessions, project)
    async with sessions() as session:
        project_row = await session.get(Project, project.id)
        assert project_row is not None
    start = DAY - dt.timedelta(days=6)
    xlsx = tmp_path / "billing.xlsx"
    csv_path = tmp_path / "billing.csv"
    async with db.reader(engine) as connection:
        sink = exports.XlsxSink(xlsx, "billing", exports.BILLING_COLUMNS, total_column=4)
        assert await exports.export(exports.billing_rows(connection, project_row, start, DAY), sink) == 2
        csv_sink = exports.CsvSink(csv_path, exports.BILLING_COLUMNS)
        await exports.export(exports.billing_rows(connection, project_row, start, DAY), csv_sink)

    sheet = load_workbook(xlsx).active
    assert sheet is not None
    rows = [tuple(c.value for c in row) for row in sheet.iter_rows()]
    assert rows[0] == ("Date", "Promoter", "Promoter Telegram id", "Store", "Validated contacts")
    # Local days (Moscow): the 23:30 contacts belong to their own evening, not to the next UTC day.
    assert [(r[0].date(), r[1], r[2], r[3], r[4]) for r in rows[1:3]] == [
        (DAY - dt.timedelta(days=1), "Olga", 8002, "Store 2", 2),
        (DAY, "Pavel", 8001, "Store 1", 3),  # approved and not disputed now; rejected/fraud/queued not paid
    ]
    assert rows[3][0] == "Total" and rows[3][4] == "=SUM(E2:E3)"
    assert sheet["E2"].number_format == "#,##0" and sheet["A2"].number_format == "yyyy-mm-dd"
    # A width of 28 characters is stored as Excel writes it: the characters plus 5 pixels of padding.
    assert int(sheet.column_dimensions["B"].width) == 28 and sheet["A1"].font.b
    assert sheet.freeze_panes == "A2"

    written = csv_path.read_text(encoding="utf-8-sig")
    assert list(csv.reader(io.StringIO(written))) == [
        ["Date", "Promoter", "Promoter Telegram id", "Store", "Validated contacts"],
        [(DAY - dt.timedelta(days=1)).isoformat(), "Olga", "8002", "Store 2", "2"],
        [DAY.isoformat(), "Pavel", "8001", "Store 1", "3"],
    ]


async def test_manager_gets_billing_in_the_chat_and_others_are_refused(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions, timezone="Europe/Moscow")
    await seed(sessions, project, last_week_end())
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    reviewer = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")

    await reviewer.send_command("billing")
    await reviewer.expect(text("export-not-manager"))

    await manager.send_command("billing")
    choice = await manager.expect(text("export-choose-period"))
    this_month = next(
        b for b in buttons(choice) if b["text"] in (label("period-last-month"), label("period-this-month"))
    )
    forged = await reviewer.press(choice, data=this_month["callback_data"])
    assert (await reviewer.callback_answer(forged))["text"] == label("alert-not-manager")

    await manager.press(choice, label("period-week"))
    await manager.wait_last(text("export-choose-format"))
    await manager.press(manager.last(), "XLSX")
    today = utcnow().astimezone(ZoneInfo("Europe/Moscow")).date()
    start, end = period_dates(ExportPeriod.WEEK, today)
    document = await manager.expect(
        text("export-ready", rows=2, start=start.isoformat(), end=end.isoformat())
    )
    assert document["document"]["file_name"].startswith("billing-") and document["document"][
        "file_name"
    ].endswith(".xlsx")
    stored = tg.world.files[document["document"]["file_id"]]
    sheet = load_workbook(stored.path).active
    assert sheet is not None and sheet["A1"].value == text("export-col-date")
    await tg.wait_until(
        lambda: any(text("export-done", rows=2) in message_text(m) for m in manager.bot_messages())
    )


async def test_a_russian_managers_export_is_in_russian(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The file's own words (column titles, statuses, verdicts, yes/no) are in the manager's language: a
    Russian manager's file had English column titles and values before."""
    project = await seed_project(sessions, timezone="Europe/Moscow")
    await seed(sessions, project, last_week_end())
    manager = await join(tg, sessions, project, Role.MANAGER, 3002, "Maria")
    async with sessions() as session, session.begin():  # her choice in /lang
        await session.execute(update(User).where(User.telegram_id == 3002).values(locale="ru"))

    await manager.send_command("export")
    await manager.expect(text("export-choose-period", "ru"))
    await manager.press(manager.last(), label("period-week", "ru"))
    await manager.wait_last(text("export-choose-format", "ru"))
    await manager.press(manager.last(), "XLSX")
    today = utcnow().astimezone(ZoneInfo("Europe/Moscow")).date()
    start, end = period_dates(ExportPeriod.WEEK, today)
    document = await manager.expect(
        text("export-ready", "ru", rows=9, start=start.isoformat(), end=end.isoformat())
    )
    sheet = load_workbook(tg.world.files[document["document"]["file_id"]].path).active
    assert sheet is not None
    rows = [tuple(c.value for c in row) for row in sheet.iter_rows()]
    keys = (
        "contact",
        "submitted",
        "promoter",
        "store",
        "status",
        "verdict",
        "score",
        "validated",
        "customer-score",
    )
    assert rows[0] == tuple(text(f"export-col-{key}", "ru") for key in keys)
    # In the seed's order: the first approved and reviewed (paid), the fifth fraud, the seventh not reviewed.
    contacts = sorted(rows[1:])
    assert len(contacts) == 9
    ru = {
        key: text(key, "ru")
        for key in ("export-yes", "export-no", "export-verdict-approve", "export-verdict-fraud")
    }
    assert contacts[0][4:8] == (
        text("status-reviewed", "ru"),
        ru["export-verdict-approve"],
        90.0,
        ru["export-yes"],
    )
    assert contacts[4][4:8] == (text("status-final", "ru"), ru["export-verdict-fraud"], 20.0, ru["export-no"])
    assert contacts[6][4:6] == (text("status-queued", "ru"), None)
    assert ru["export-yes"] != text("export-yes") and rows[0][0] != text("export-col-contact")  # not English


async def test_a_long_export_holds_up_no_writer(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Mid-export (the cursor open, rows still coming), a contact can still be written and committed: on
    SQLite every transaction here takes the write lock, so the export reads outside any."""
    project = await seed_project(sessions)
    await seed(sessions, project)
    async with sessions() as session:
        project_row = await session.get(Project, project.id)
        assert project_row is not None
    async with db.reader(engine) as connection:
        rows = exports.contact_rows(connection, project_row, DAY - dt.timedelta(days=6), DAY)
        first = await anext(rows)
        assert first[0] >= 1

        async def write() -> None:
            async with sessions() as session, session.begin():
                await session.execute(update(Project).values(name="Renamed while exporting"))

        await asyncio.wait_for(write(), timeout=5)  # a blocked writer would wait out SQLite's 30 s
        rest = [row async for row in rows]
    assert len(rest) == 8  # nine contacts in all


async def test_billing_days_are_local_across_a_dst_change(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The database groups by local day one stretch of constant UTC offset at a time: New York leaves
    daylight saving on 1 November 2026 at 06:00 UTC, and each contact still lands on its local day."""
    from sqlalchemy import update

    project = await seed_project(sessions)
    new_york = ZoneInfo("America/New_York")
    async with sessions() as session, session.begin():
        await session.execute(
            update(Project).where(Project.id == project.id).values(timezone="America/New_York")
        )
        pavel = User(telegram_id=8001, first_name="Pavel")
        session.add(pavel)
        await session.flush()
        for local in (
            dt.datetime(2026, 10, 31, 23, 30, tzinfo=new_york),  # EDT: 03:30 UTC on 1 November
            dt.datetime(2026, 11, 1, 0, 30, tzinfo=new_york),  # still EDT
            dt.datetime(2026, 11, 1, 23, 30, tzinfo=new_york),  # EST: 04:30 UTC on 2 November
            dt.datetime(2026, 11, 2, 0, 15, tzinfo=new_york),
        ):
            contact, _ = await add_contact(session, project.id, pavel.id)
            contact.submitted_at = local.astimezone(dt.UTC)
            contact.form_answers = {"store": "Store 1"}
            contact.final_verdict, contact.status = Verdict.APPROVE, ContactStatus.FINAL
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None
    async with db.reader(engine) as connection:
        rows = [
            r
            async for r in exports.billing_rows(
                connection, stored, dt.date(2026, 10, 31), dt.date(2026, 11, 2)
            )
        ]
    assert [(day, count) for day, _name, _tg, _store, count in rows] == [
        (dt.date(2026, 10, 31), 1),
        (dt.date(2026, 11, 1), 2),
        (dt.date(2026, 11, 2), 1),
    ]
