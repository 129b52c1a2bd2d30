"""The managers' daily digest over real HTTP: figures against the previous 7 days, the chart image,
exactly once per project and day, and a missed digest sent late."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from PIL import Image, ImageColor
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.db import Database
from infra.storage import AudioStore, LocalAudioStore, create_audio_store
from jobs import digest as digest_job
from models import (
    DigestLog,
    Dispute,
    NpsAnswer,
    NpsCategory,
    OutboxMessage,
    Project,
    Role,
    SurveyStatus,
    User,
    Verdict,
)
from services import digest as digest_service
from services import surveys
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.helpers import add_contact, add_review, join, seed_project

MOSCOW = dt.timezone(dt.timedelta(hours=3))
DAY = dt.date(2026, 11, 30)  # the day the digest is about; it goes out on 1 December at 09:00 Moscow


async def seed_day(
    session: AsyncSession,
    project: Project,
    promoter: User,
    reviewer: User,
    day: dt.date,
    verdicts: list[Verdict],
) -> None:
    noon = dt.datetime.combine(day, dt.time(12), MOSCOW)
    for verdict in verdicts:
        contact, _ = await add_contact(session, project.id, promoter.id)
        contact.submitted_at = noon
        await add_review(session, contact.id, reviewer.id, verdict, noon + dt.timedelta(minutes=30))


def _store(app: Runtime) -> AudioStore:
    """The blob store the bot's outbox sender reads (the digest job puts its charts there)."""
    return create_audio_store(app.settings)


async def _check_chart(
    tg: StandIn,
    chart: dict,
    sessions: async_sessionmaker[AsyncSession],
    project: Project,  # type: ignore[type-arg]
) -> None:
    """A phone-sized PNG with the bars and both lines drawn, from the series the fixture implies."""
    size = chart["photo"][0]
    with Image.open(tg.world.files[size["file_id"]].path) as image:
        assert image.format == "PNG" and image.size[0] >= 1000  # readable on a phone screen
        colours = {pixel for _count, pixel in image.convert("RGB").getcolors(maxcolors=1 << 20) or []}
    for colour in (digest_service.VOLUME_COLOUR, digest_service.APPROVAL_COLOUR, digest_service.FRAUD_COLOUR):
        assert ImageColor.getrgb(colour) in colours  # the bars and both lines are drawn
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None
        series = digest_service.chart_series(await digest_service.build_digest(session, stored, DAY))
    # 14 days: the 7 before are 4 contacts, 75% approved, no fraud; the day is 9 contacts, 50% and 25%.
    assert len(series["contacts"]) == 14
    assert series["contacts"][-8:] == [4] * 7 + [9]
    assert series["approval"][-8:] == [75.0] * 7 + [50.0] and series["fraud"][-8:] == [0.0] * 7 + [25.0]


async def _chart_sent_from_the_store_then_removed(
    app: Runtime, sessions: async_sessionmaker[AsyncSession], project: Project
) -> None:
    async with sessions() as session:  # queued as a key in the blob store, not a file of this machine
        queued = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.dedupe_key.like("digest:%:chart"))
        )
    assert queued is not None and queued.payload["kind"] == "chart" and "path" not in queued.payload
    # Sent from the store (a chart missing there ends `failed`), under a key of this project's day only,
    # and removed from it once sent: no message still to be sent carries it.
    key = queued.payload["blob_key"]
    assert key.endswith(digest_job.chart_suffix(project.id, DAY))
    async with asyncio.timeout(10):
        while _store(app).exists(key):  # noqa: ASYNC110 - the bot's sender removes it after recording the send
            await asyncio.sleep(0.02)


async def test_daily_digest_once_with_chart_and_late_after_downtime(
    app: Runtime, tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    async with sessions() as session, session.begin():
        promoter, reviewer = (
            User(telegram_id=8001, first_name="Pavel"),
            User(telegram_id=8002, first_name="Rita"),
        )
        session.add_all([promoter, reviewer])
        await session.flush()
        for back in range(1, 8):  # the previous 7 days: 4 contacts a day, 3 approved
            previous = DAY - dt.timedelta(days=back)
            await seed_day(
                session, project, promoter, reviewer, previous, [Verdict.APPROVE] * 3 + [Verdict.REJECT]
            )
        # The day itself: 8 contacts; 4 approved, 2 rejected, 2 fraud; one customer answered 2 (a detractor).
        verdicts = [Verdict.APPROVE] * 4 + [Verdict.REJECT] * 2 + [Verdict.FRAUD] * 2
        await seed_day(session, project, promoter, reviewer, DAY, verdicts)
        disputed, _ = await add_contact(
            session, project.id, promoter.id
        )  # an older contact, disputed that day
        disputed.submitted_at = dt.datetime.combine(DAY - dt.timedelta(days=20), dt.time(12), MOSCOW)
        session.add(
            Dispute(
                contact_id=disputed.id,
                promoter_id=promoter.id,
                reason="the customer did buy",
                created_at=dt.datetime.combine(DAY, dt.time(16), MOSCOW),
            )
        )
        contact, _ = await add_contact(session, project.id, promoter.id)
        contact.submitted_at = dt.datetime.combine(DAY, dt.time(15), MOSCOW)
        survey = await surveys.create_survey(session, project, contact, contact.submitted_at)
        assert survey is not None
        survey.status = SurveyStatus.ANSWERED
        session.add(
            NpsAnswer(survey_id=survey.id, score=2, category=NpsCategory.DETRACTOR, follow_up="Очень долго")
        )

    before = dt.datetime(2026, 12, 1, 8, 59, tzinfo=MOSCOW)
    assert await digest_job.send_digests(db, app.i18n, _store(app), before) == 0  # not yet 09:00 there
    on_time = dt.datetime(2026, 12, 1, 9, 0, 30, tzinfo=MOSCOW)
    assert await digest_job.send_digests(db, app.i18n, _store(app), on_time) == 1
    assert await digest_job.send_digests(db, app.i18n, _store(app), on_time + dt.timedelta(minutes=1)) == 0

    chart = await manager.next_message()
    assert "photo" in chart
    await _check_chart(tg, chart, sessions, project)
    await _chart_sent_from_the_store_then_removed(app, sessions, project)
    text = message_text(await manager.expect("daily digest for 30.11.2026"))
    # 9 contacts against 4 a day before: +125%; 4 of 8 approved (50%) against 3 of 4 (75%): -25 pp.
    assert "Contacts: 9 (+125%)" in text and "reviewed 8" in text
    assert "Approved 4 · rejected 2 · fraud 2" in text
    assert "Approval rate 50% (-25 pp)" in text
    assert "Median time from recording to verdict: 30 min" in text
    assert "NPS -100 from 1 answer" in text and "Очень долго" in text
    assert "Best promoters (7 days, approval): Pavel" in text
    assert "Sent late" not in text
    assert "Reviews by reviewer: Rita 8" in text
    assert "Disputes: 1 opened, 0 settled" in text

    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(DigestLog)) == 1

    # The service was down all the next morning: the digest goes out when it is back, marked late.
    after_downtime = dt.datetime(2026, 12, 2, 14, 0, tzinfo=MOSCOW)
    async with sessions() as session, session.begin():
        await session.execute(update(Project).values(timezone="Europe/Moscow"))
    assert await digest_job.send_digests(db, app.i18n, _store(app), after_downtime) == 1
    late = message_text(await manager.skip_to("daily digest for 01.12.2026"))
    assert "Sent late" in late and "Customers: no survey answers that day" in late


async def _seed_report_fixture(sessions: async_sessionmaker[AsyncSession], project: Project) -> dt.datetime:
    """Five contacts submitted a moment ago: Pavel's three at Ашан (approved twice, rejected), Olga's two at
    Лента (fraud, one not reviewed yet); returns their time."""
    from models.base import utcnow

    now = utcnow() - dt.timedelta(seconds=5)
    async with sessions() as session, session.begin():
        pavel, olga, rita = (
            User(telegram_id=8101, first_name="Pavel"),
            User(telegram_id=8102, first_name="Olga"),
            User(telegram_id=8103, first_name="Rita"),
        )
        session.add_all([pavel, olga, rita])
        await session.flush()
        fixture = [
            (pavel, "Ашан", Verdict.APPROVE),
            (pavel, "Ашан", Verdict.APPROVE),
            (pavel, "Ашан", Verdict.REJECT),
            (olga, "Лента", Verdict.FRAUD),
            (olga, "Лента", None),  # not reviewed yet
        ]
        for promoter, store, verdict in fixture:
            contact, _ = await add_contact(session, project.id, promoter.id)
            contact.submitted_at, contact.form_answers, contact.final_verdict = now, {"store": store}, verdict
            if verdict is not None:
                await add_review(session, contact.id, rita.id, verdict, now)
    return now


async def test_report_for_a_period_with_promoter_and_store_tables(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """/report (issue #10): period buttons, then the period's figures and per-promoter and per-store
    tables, from a hand-made fixture; a manager of another project cannot read it with a forged button."""
    from telegram_standin.driver import buttons

    project = await seed_project(sessions)
    other = await seed_project(sessions, "Other")
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    foreign = await join(tg, sessions, other, Role.MANAGER, 3009, "Foreign")
    await _seed_report_fixture(sessions, project)

    await manager.send_command("report")
    menu = await manager.expect("pick a period")
    assert [b["text"] for b in buttons(menu)] == [
        "Today",
        "Yesterday",
        "Last 7 days",
        "Last 30 days",
        "This month",
        "📅 Other dates…",
    ]
    forged = await foreign.press(menu, "Today")
    assert "Only the project's managers" in (await foreign.callback_answer(forged))["text"]
    await manager.press(menu, "Today")
    text = message_text(await manager.expect("report for"))
    assert "Contacts submitted: 5 · reviews written: 4" in text
    assert "Approved 2 · rejected 1 · fraud 1" in text
    assert "Approval rate 50% · average score 55" in text  # (90 + 90 + 40 + 0) / 4
    assert "• Pavel: 3 · 3 · 67%" in text and "• Olga: 2 · 1 · 0%" in text
    assert "• Ашан: 3 · 3 · 67%" in text and "• Лента: 2 · 1 · 0%" in text
    assert text.index("Pavel") < text.index("Olga")  # the busiest first

    await manager.press(menu, "Yesterday")
    assert "No contacts were submitted" in message_text(await manager.expect("report for"))

    assert not [m for m in foreign.bot_messages() if "report for" in message_text(m)]


async def test_buttons_under_the_digest(
    app: Runtime, tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Issue #10: "Contacts (XLSX)", "Promoters", "Open flags" and "Previous day" under the digest, for the
    project's managers only."""
    from openpyxl import load_workbook

    from models import FlagKind, VoiceFlag
    from telegram_standin.driver import buttons

    project = await seed_project(sessions)
    other = await seed_project(sessions, "Other")
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    foreign = await join(tg, sessions, other, Role.MANAGER, 3009, "Foreign")
    async with sessions() as session, session.begin():
        promoter, reviewer = (
            User(telegram_id=8001, first_name="Pavel"),
            User(telegram_id=8002, first_name="Rita"),
        )
        session.add_all([promoter, reviewer])
        await session.flush()
        await session.execute(
            update(Project).where(Project.id == project.id).values(timezone="Europe/Moscow")
        )
        await seed_day(session, project, promoter, reviewer, DAY, [Verdict.APPROVE, Verdict.REJECT])
        await seed_day(session, project, promoter, reviewer, DAY - dt.timedelta(days=1), [Verdict.APPROVE])
        flagged, _ = await add_contact(session, project.id, promoter.id)  # flagged, still waiting
        flagged.submitted_at = dt.datetime.combine(DAY, dt.time(13), MOSCOW)
        session.add(VoiceFlag(contact_id=flagged.id, kind=FlagKind.NO_CUSTOMER, score=0.95))
    on_time = dt.datetime(2026, 12, 1, 9, 0, 30, tzinfo=MOSCOW)
    assert (
        await digest_job.send_digests(db, app.i18n, _store(app), on_time) == 2
    )  # both projects have a manager
    digest_msg = await manager.skip_to("daily digest for 30.11.2026")
    labels = [b["text"] for b in buttons(digest_msg)]
    assert labels == ["📄 Contacts (XLSX)", "👥 Promoters", "🚩 Open flags", "⏪ Previous day"]

    forged = await foreign.press(digest_msg, "👥 Promoters")
    assert "Only the project's managers" in (await foreign.callback_answer(forged))["text"]

    await manager.press(digest_msg, "👥 Promoters")
    promoters = message_text(await manager.expect("report for 30.11.2026"))
    assert "• Pavel: 3 · 2 · 50%" in promoters  # 3 contacts that day, 2 with a verdict, 1 approved

    await manager.press(digest_msg, "🚩 Open flags")
    flags = message_text(await manager.expect("still waiting for a verdict"))
    assert f"#{flagged.id} Pavel:" in flags and ": 1" in flags

    await manager.press(digest_msg, "⏪ Previous day")
    previous = await manager.expect("daily digest for 29.11.2026")
    assert "Contacts: 1" in message_text(previous) and buttons(previous)

    await manager.press(digest_msg, "📄 Contacts (XLSX)")
    await tg.wait_until(lambda: any("document" in m for m in manager.bot_messages()), timeout=20)
    [document] = [m for m in manager.bot_messages() if "document" in m]
    assert document["document"]["file_name"].endswith("2026-11-30-2026-11-30.xlsx")
    sheet = load_workbook(tg.world.files[document["document"]["file_id"]].path).active
    assert sheet is not None and sheet.max_row - 1 == 3  # a header row and the day's three contacts
    assert not [m for m in foreign.bot_messages() if "report for" in message_text(m)]


async def test_digest_at_each_projects_local_time_and_once_with_two_schedulers(
    app: Runtime, tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession], migrated_url: str
) -> None:
    """Two projects, Moscow (UTC+3) and New York (UTC-5 in December): each digest fires at 09:00 local and
    not before; two scheduler processes (two engines, run at the same moment) send each digest once."""
    import asyncio

    from infra.db import create_engine
    from services.unit_of_work import create_database

    moscow = await seed_project(sessions, "Moscow")
    new_york = await seed_project(sessions, "New York")
    async with sessions() as session, session.begin():
        await session.execute(update(Project).where(Project.id == moscow.id).values(timezone="Europe/Moscow"))
        await session.execute(
            update(Project).where(Project.id == new_york.id).values(timezone="America/New_York")
        )
    maria = await join(tg, sessions, moscow, Role.MANAGER, 3001, "Maria")
    nick = await join(tg, sessions, new_york, Role.MANAGER, 3002, "Nick")

    other = create_database(create_engine(migrated_url))
    try:

        async def both(now: dt.datetime) -> int:
            counts = await asyncio.gather(
                digest_job.send_digests(db, app.i18n, _store(app), now),
                digest_job.send_digests(other, app.i18n, _store(app), now),
            )
            return sum(counts)

        utc = dt.UTC
        assert await both(dt.datetime(2026, 12, 1, 5, 59, tzinfo=utc)) == 0  # 08:59 in Moscow
        assert await both(dt.datetime(2026, 12, 1, 6, 0, 30, tzinfo=utc)) == 1  # 09:00 in Moscow only
        assert await both(dt.datetime(2026, 12, 1, 13, 59, tzinfo=utc)) == 0  # 08:59 in New York
        assert await both(dt.datetime(2026, 12, 1, 14, 0, 30, tzinfo=utc)) == 1  # 09:00 in New York
        assert await both(dt.datetime(2026, 12, 1, 20, 0, tzinfo=utc)) == 0
    finally:
        await other.close()
    await maria.skip_to("Moscow: daily digest for 30.11.2026")
    await nick.skip_to("New York: daily digest for 30.11.2026")
    await app.settled()
    async with sessions() as session:
        logs = list(await session.scalars(select(DigestLog).order_by(DigestLog.project_id)))
    assert [(log.project_id, log.digest_date) for log in logs] == [
        (moscow.id, DAY),
        (new_york.id, DAY),
    ]
    for person in (maria, nick):
        assert len([m for m in person.bot_messages() if "daily digest" in message_text(m)]) == 1


async def test_digest_quality_lines_from_a_hand_made_fixture(
    app: Runtime, tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Issue #10's quality figures: mean mark and pass rate per criterion, how often reviewers confirmed each
    automatic flag, repeated-voice clusters still open, and each reviewer's kappa on double-reviewed contacts."""
    from models import FlagKind, VoiceFlag

    project = await seed_project(sessions)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    noon = dt.datetime.combine(DAY, dt.time(12), MOSCOW)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Project).where(Project.id == project.id).values(timezone="Europe/Moscow")
        )
        promoter = User(telegram_id=8001, first_name="Pavel")
        rita, sam = User(telegram_id=8002, first_name="Rita"), User(telegram_id=8003, first_name="Sam")
        session.add_all([promoter, rita, sam])
        await session.flush()

        async def review(contact_id: int, reviewer: User, verdict: Verdict, marks: dict[str, int]) -> None:
            await add_review(
                session, contact_id, reviewer.id, verdict, noon + dt.timedelta(minutes=30), marks=marks
            )

        good = {"greeting": 1, "presentation": 3, "offer": 1, "politeness": 1, "real_customer": 1}
        poor = {"greeting": 0, "presentation": 1, "offer": 1, "politeness": 1, "real_customer": 0}
        first, _ = await add_contact(session, project.id, promoter.id)
        second, _ = await add_contact(session, project.id, promoter.id)
        waiting, _ = await add_contact(session, project.id, promoter.id)
        for contact in (first, second, waiting):
            contact.submitted_at = noon
        first.calibration = second.calibration = True  # drawn for a blind second review
        # Both contacts reviewed twice (a calibration sample): Rita and Sam agree on one, not the other.
        await review(first.id, rita, Verdict.APPROVE, good)
        await review(first.id, sam, Verdict.APPROVE, good)
        await review(second.id, rita, Verdict.FRAUD, poor)
        await review(second.id, sam, Verdict.REJECT, poor)
        session.add(VoiceFlag(contact_id=second.id, kind=FlagKind.NO_CUSTOMER, score=0.95))
        session.add(VoiceFlag(contact_id=first.id, kind=FlagKind.DUPLICATE_RECORDING, score=0.99))
        session.add(VoiceFlag(contact_id=waiting.id, kind=FlagKind.REPEATED_CUSTOMER, cluster_key="c1"))

    on_time = dt.datetime(2026, 12, 1, 9, 0, 30, tzinfo=MOSCOW)
    assert await digest_job.send_digests(db, app.i18n, _store(app), on_time) == 1
    text = message_text(await manager.skip_to("daily digest for 30.11.2026"))
    # Greeting: marks 1, 1, 0, 0 of 1; presentation 3, 3, 1, 1 of 3: a mean of 67%, never failed.
    assert "By criterion (mean mark · passed): Greeting 50% · 50%, Product presentation 67% · 100%" in text
    # The latest review of each contact decides: Sam's reject does not confirm "resent" or "no customer"
    # (only a fraud verdict or "not a real customer" does); Sam marked the customer not real on the second.
    assert (
        "Flags confirmed by reviewers (last 500 reviewed contacts): the recording was sent before 0/1,"
        " no customer voice 1/1"
    ) in text
    assert "Repeated-voice clusters still open: 1" in text
    # Rita's verdicts against Sam's: approve/approve, fraud/reject: observed 1/2, expected 1/4 -> kappa 0.33.
    assert (
        "Reviewer agreement on double-reviewed contacts (kappa, 30 days, pairs): Rita 0.33 (2), Sam 0.33 (2)"
        in text
    )


async def test_report_for_dates_the_manager_types(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from zoneinfo import ZoneInfo

    project = await seed_project(sessions)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    now = await _seed_report_fixture(sessions, project)
    await manager.send_command("report")
    menu = await manager.expect("pick a period")
    # Other dates: asked for, refused politely when unreadable, then the report of that range.
    await manager.press(menu, "📅 Other dates…")
    await manager.expect("Send the first and the last day")
    await manager.send_text("last Tuesday")
    await manager.expect("I could not read that")
    local_today = now.astimezone(ZoneInfo(project.timezone)).date()
    await manager.send_text(f"{(local_today - dt.timedelta(days=3)):%d.%m.%Y} – {local_today:%d.%m.%Y}")
    ranged = message_text(await manager.expect("report for"))
    assert "Contacts submitted: 5 · reviews written: 4" in ranged
    await manager.press(menu, "📅 Other dates…")
    await manager.expect("Send the first and the last day")
    await manager.send_command("cancel")
    await manager.expect("Cancelled")
    await manager.send_text("01.11.2026")  # no longer waiting for dates
    await manager.expect("I did not understand that")


async def test_reported_days_are_read_back_from_the_digest_log(
    app: Runtime, tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The trend shows each day as its digest reported it (the digest log), so a digest computes one day, not
    fourteen; a day that was never reported is computed."""
    from services import digest as digest_service

    project = await seed_project(sessions)
    await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    async with sessions() as session, session.begin():
        await session.execute(
            update(Project).where(Project.id == project.id).values(timezone="Europe/Moscow")
        )
        promoter, reviewer = (
            User(telegram_id=8001, first_name="Pavel"),
            User(telegram_id=8002, first_name="Rita"),
        )
        session.add_all([promoter, reviewer])
        await session.flush()
        await seed_day(session, project, promoter, reviewer, DAY, [Verdict.APPROVE] * 3)
        await seed_day(session, project, promoter, reviewer, DAY - dt.timedelta(days=1), [Verdict.REJECT] * 2)
    on_time = dt.datetime(2026, 12, 1, 9, 0, 30, tzinfo=MOSCOW)
    assert await digest_job.send_digests(db, app.i18n, _store(app), on_time) == 1  # reports 30.11
    async with sessions() as session, session.begin():  # a late review of 30.11, after its digest
        await seed_day(session, project, promoter, reviewer, DAY, [Verdict.FRAUD])
        stored = await session.get(Project, project.id)
        assert stored is not None
        nextday = await digest_service.build_digest(session, stored, DAY + dt.timedelta(days=1))
    trend = dict(nextday.trend)
    assert (trend[DAY].reviewed, trend[DAY].approved, trend[DAY].fraud) == (3, 3, 0)  # as reported on 1.12
    before = trend[DAY - dt.timedelta(days=1)]  # never reported: computed from the reviews
    assert (before.reviewed, before.rejected) == (2, 2)


async def test_reports_read_beside_writers(db: Database, sessions: async_sessionmaker[AsyncSession]) -> None:
    """A report or a digest reads for seconds on a big project; through `db.read_session` it holds up no
    writer (on SQLite every transaction of the bot takes the write lock at its start)."""
    from services.reports import build_report

    project = await seed_project(sessions)
    async with db.read_session() as reading:
        stored = await reading.get(Project, project.id)
        assert stored is not None
        await build_report(reading, stored, DAY - dt.timedelta(days=29), DAY)

        async def write() -> None:
            async with sessions() as session, session.begin():
                session.add(User(telegram_id=8999, first_name="Writer"))

        await asyncio.wait_for(write(), 5)  # inside the read: a writer goes through at once
        assert (
            await reading.scalar(select(func.count()).select_from(User).where(User.telegram_id == 8999))
        ) == 1


def test_a_report_has_no_store_table_when_the_form_asks_for_no_store() -> None:
    from services.digest import DayFigures
    from services.reports import Report, Row
    from telegram_ui.cards import rendered
    from telegram_ui.i18n import create_i18n
    from telegram_ui.report_cards import report_text

    base = {"project_name": "Tasting", "first": DAY, "last": DAY, "figures": DayFigures(received=2)}
    with_stores = Report(
        **base, promoters=[Row("Pavel", 2, 0, 0)], stores=[Row("Ашан", 2, 0, 0)], nps=None, nps_responses=0
    )
    without = Report(
        **base, promoters=[Row("Pavel", 2, 0, 0)], stores=[Row("—", 2, 0, 0)], nps=None, nps_responses=0
    )
    i18n = create_i18n("en")
    assert "<b>Stores</b>" in rendered(i18n, "en", report_text, with_stores)
    text = rendered(i18n, "en", report_text, without)
    assert "Stores" not in text and "• Pavel: 2 · 0 · —" in text


async def test_a_process_that_lost_the_day_removes_only_the_charts_nobody_queued(
    app: Runtime,
    tg: StandIn,
    db: Database,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes build the same day; the one whose claim comes second queues nothing. A chart it drew
    like the winner's (same bytes, same key) is the winner's and stays; one it drew otherwise is removed."""
    project = await seed_project(sessions, "Moscow")
    async with sessions() as session, session.begin():
        await session.execute(
            update(Project).where(Project.id == project.id).values(timezone="Europe/Moscow")
        )
    await join(tg, sessions, project, Role.MANAGER, 3011, "Maria")

    class Store(LocalAudioStore):
        """Remembers what was put; not the bot's store, so its sender neither sends nor removes these."""

        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.put_keys: list[str] = []

        def put(self, data: bytes, suffix: str = "") -> str:
            key = super().put(data, suffix)
            self.put_keys.append(key)
            return key

    store = Store(tmp_path / "charts")
    now = dt.datetime(2026, 12, 1, 6, 0, 30, tzinfo=dt.UTC)  # 09:00:30 in Moscow
    assert await digest_job.send_digests(db, app.i18n, store, now) == 1
    async with sessions() as session:
        queued = list(
            await session.scalars(
                select(OutboxMessage.payload).where(OutboxMessage.dedupe_key.like("digest:%:chart"))
            )
        )
    assert [payload["blob_key"] for payload in queued] == store.put_keys
    [winners] = store.put_keys
    assert winners.endswith(digest_job.chart_suffix(project.id, DAY)) and store.exists(winners)

    async def not_yet_seen(*_args: object) -> bool:  # the loser read before the winner's claim committed
        return False

    monkeypatch.setattr(digest_service, "already_sent", not_yet_seen)
    assert await digest_job.send_digests(db, app.i18n, store, now) == 0  # drew the same chart
    assert store.put_keys == [winners, winners] and store.exists(winners)
    drawn = digest_service.chart_png
    monkeypatch.setattr(digest_service, "chart_png", lambda *a: drawn(*a) + b"drawn otherwise")
    assert await digest_job.send_digests(db, app.i18n, store, now) == 0
    losers = store.put_keys[-1]
    assert losers != winners and not store.exists(losers) and store.exists(winners)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(DigestLog)) == 1
