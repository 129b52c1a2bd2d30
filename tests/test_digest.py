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
from tests.helpers import (
    add_contact,
    add_review,
    add_users,
    criterion,
    fragment,
    join,
    label,
    seed_project,
    text,
)

MOSCOW = dt.timezone(dt.timedelta(hours=3))
DAY = dt.date(2026, 11, 30)  # the day the digest is about; it goes out on 1 December at 09:00 Moscow
ANY_DIGEST = fragment("digest-title")  # ": daily digest for ", any project and day
ANY_REPORT = fragment("report-title")  # ": report for ", any project and span


def digest_title(project: Project | str, day: str) -> str:
    """A digest's first line: the project's name and the day it is about (as DD.MM.YYYY)."""
    return text("digest-title", project=project if isinstance(project, str) else project.name, day=day)


def lines_of(message: dict) -> list[str]:  # type: ignore[type-arg]
    """A digest's or a report's lines as the manager reads them: most lines are one text key each."""
    return message_text(message).split("\n")


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
        promoter, reviewer = await add_users(session, (8001, "Pavel"), (8002, "Rita"))
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
    digest = lines_of(await manager.expect(digest_title(project, "30.11.2026")))
    assert digest[0] == digest_title(project, "30.11.2026")
    # 9 contacts against 4 a day before: +125%; 4 of 8 approved (50%) against 3 of 4 (75%): -25 pp.
    assert text("digest-volume", received=9, change=" (+125%)", reviewed=8) in digest
    assert text("digest-verdicts", approved=4, rejected=2, fraud=2) in digest
    # Average score (4 * 90 + 2 * 40 + 2 * 0) / 8 = 55 (tests.helpers.SCORE_OF).
    assert text("digest-quality", rate="50%", change=" (-25 pp)", score=55) in digest
    assert text("digest-speed", minutes=30, sla=0) in digest
    nps = text("digest-nps", nps="-100", responses=1)
    assert nps in digest and "Очень долго" in digest[digest.index(nps) + 1]  # the customer's words follow
    assert any(line.startswith(f"{fragment('digest-top')}Pavel ") for line in digest)
    assert text("digest-late") not in digest
    assert text("digest-reviewers", reviewers="Rita 8") in digest
    assert text("digest-disputes", opened=1, resolved=0) in digest

    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(DigestLog)) == 1

    # The service was down all the next morning: the digest goes out when it is back, marked late.
    after_downtime = dt.datetime(2026, 12, 2, 14, 0, tzinfo=MOSCOW)
    async with sessions() as session, session.begin():
        await session.execute(update(Project).values(timezone="Europe/Moscow"))
    assert await digest_job.send_digests(db, app.i18n, _store(app), after_downtime) == 1
    late = lines_of(await manager.skip_to(digest_title(project, "01.12.2026")))
    assert late[:2] == [digest_title(project, "01.12.2026"), text("digest-late")]  # marked late at once
    assert text("digest-nps-none") in late


async def test_no_digest_about_a_day_before_the_project_existed(
    app: Runtime, tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A project set up in the evening, after its digest time, gets nothing about yesterday (it did not
    exist, and a "late" digest would say the service was down); the next morning, the one about its first day."""
    created = dt.datetime(2026, 12, 1, 19, 0, tzinfo=MOSCOW)
    project = await seed_project(sessions, timezone="Europe/Moscow", created_at=created)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    for later in (dt.timedelta(minutes=5), dt.timedelta(hours=4)):  # 19:05 and 23:00 of its first day
        assert await digest_job.send_digests(db, app.i18n, _store(app), created + later) == 0
    next_morning = dt.datetime(2026, 12, 2, 9, 0, 30, tzinfo=MOSCOW)
    assert await digest_job.send_digests(db, app.i18n, _store(app), next_morning) == 1
    assert "photo" in await manager.next_message()
    digest = lines_of(await manager.expect(digest_title(project, "01.12.2026")))
    assert text("digest-late") not in digest
    async with sessions() as session:
        assert list(await session.scalars(select(DigestLog.digest_date))) == [dt.date(2026, 12, 1)]


async def _seed_report_fixture(sessions: async_sessionmaker[AsyncSession], project: Project) -> dt.datetime:
    """Five contacts submitted a moment ago: Pavel's three at Ашан (approved twice, rejected), Olga's two at
    Лента (fraud, one not reviewed yet); returns their time."""
    from models.base import utcnow

    now = utcnow() - dt.timedelta(seconds=5)
    async with sessions() as session, session.begin():
        pavel, olga, rita = await add_users(session, (8101, "Pavel"), (8102, "Olga"), (8103, "Rita"))
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
    menu = await manager.expect(text("report-choose-period"))
    assert [b["text"] for b in buttons(menu)] == [
        label("period-today"),
        label("period-yesterday"),
        label("period-week"),
        label("period-30-days"),
        label("period-this-month"),
        label("report-range-button"),
    ]
    forged = await foreign.press(menu, label("period-today"))
    assert (await foreign.callback_answer(forged))["text"] == label("report-not-manager")
    await manager.press(menu, label("period-today"))
    # The title's span is today's date in the project's zone: not compared, as midnight may pass meanwhile.
    report = lines_of(await manager.expect(fragment("report-title", project=project.name)))
    assert report[1:4] == [
        text("report-volume", received=5, reviewed=4),
        text("digest-verdicts", approved=2, rejected=1, fraud=1),
        text("digest-quality", rate="50%", change="", score=55),  # (90 + 90 + 40 + 0) / 4
    ]
    promoters = [
        text("report-row", name="Pavel", received=3, reviewed=3, rate="67%"),
        text("report-row", name="Olga", received=2, reviewed=1, rate="0%"),
    ]
    stores = [
        text("report-row", name="Ашан", received=3, reviewed=3, rate="67%"),
        text("report-row", name="Лента", received=2, reviewed=1, rate="0%"),
    ]
    # Each table whole, the busiest first.
    assert report[-8:] == ["", text("report-promoters"), *promoters, "", text("report-stores"), *stores]

    await manager.press(menu, label("period-yesterday"))
    yesterday = lines_of(await manager.expect(fragment("report-title", project=project.name)))
    assert yesterday[-2:] == ["", text("report-empty")]

    assert not [m for m in foreign.bot_messages() if ANY_REPORT in message_text(m)]


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
        promoter, reviewer = await add_users(session, (8001, "Pavel"), (8002, "Rita"))
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
    digest_msg = await manager.skip_to(digest_title(project, "30.11.2026"))
    labels = [b["text"] for b in buttons(digest_msg)]
    assert labels == [
        label("btn-digest-contacts"),
        label("btn-digest-promoters"),
        label("btn-digest-flags"),
        label("btn-digest-previous"),
    ]

    forged = await foreign.press(digest_msg, label("btn-digest-promoters"))
    assert (await foreign.callback_answer(forged))["text"] == label("report-not-manager")

    await manager.press(digest_msg, label("btn-digest-promoters"))
    promoters = lines_of(await manager.expect(text("report-title", project=project.name, span="30.11.2026")))
    # 3 contacts that day, 2 with a verdict, 1 approved.
    assert text("report-row", name="Pavel", received=3, reviewed=2, rate="50%") in promoters

    await manager.press(digest_msg, label("btn-digest-flags"))
    flags = message_text(await manager.expect(text("digest-flags-title", day="30.11.2026", count=1)))
    # The list's line is the handler's own format (telegram_ui/digest_cards.py): "• #id promoter: flags".
    assert flags == "\n".join(
        [
            text("digest-flags-title", day="30.11.2026", count=1),
            f"• #{flagged.id} Pavel: {label('flag-no-customer')}",
        ]
    )

    await manager.press(digest_msg, label("btn-digest-previous"))
    previous = await manager.expect(digest_title(project, "29.11.2026"))
    # One contact that day, none in the 7 days before it: no change to show.
    assert text("digest-volume", received=1, change="", reviewed=1) in lines_of(previous)
    assert buttons(previous)

    await manager.press(digest_msg, label("btn-digest-contacts"))
    await tg.wait_until(lambda: any("document" in m for m in manager.bot_messages()), timeout=20)
    [document] = [m for m in manager.bot_messages() if "document" in m]
    assert document["document"]["file_name"].endswith("2026-11-30-2026-11-30.xlsx")
    sheet = load_workbook(tg.world.files[document["document"]["file_id"]].path).active
    assert sheet is not None and sheet.max_row - 1 == 3  # a header row and the day's three contacts
    assert not [m for m in foreign.bot_messages() if ANY_REPORT in message_text(m)]


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
    await maria.skip_to(digest_title("Moscow", "30.11.2026"))
    await nick.skip_to(digest_title("New York", "30.11.2026"))
    await app.settled()
    async with sessions() as session:
        logs = list(await session.scalars(select(DigestLog).order_by(DigestLog.project_id)))
    assert [(log.project_id, log.digest_date) for log in logs] == [
        (moscow.id, DAY),
        (new_york.id, DAY),
    ]
    for person in (maria, nick):
        assert len([m for m in person.bot_messages() if ANY_DIGEST in message_text(m)]) == 1


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
        promoter, rita, sam = await add_users(session, (8001, "Pavel"), (8002, "Rita"), (8003, "Sam"))

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
    digest = lines_of(await manager.skip_to(digest_title(project, "30.11.2026")))
    # Greeting: marks 1, 1, 0, 0 of 1; presentation 3, 3, 1, 1 of 3: a mean of 67%, never failed; the
    # offer and politeness always 1 of 1; a real customer 1, 1, 0, 0.
    marked = {"greeting": "50% · 50%", "presentation": "67% · 100%", "offer": "100% · 100%"}
    marked |= {"politeness": "100% · 100%", "real_customer": "50% · 50%"}
    by_criterion = ", ".join(f"{criterion(key)} {figures}" for key, figures in marked.items())
    assert text("digest-criteria", criteria=by_criterion) in digest
    # The latest review of each contact decides: Sam's reject does not confirm "resent" or "no customer"
    # (only a fraud verdict or "not a real customer" does); Sam marked the customer not real on the second.
    confirmed = f"{label('flag-duplicate-recording')} 0/1, {label('flag-no-customer')} 1/1"
    assert text("digest-flag-precision", flags=confirmed) in digest
    assert text("digest-open-clusters", count=1) in digest
    # Rita's verdicts against Sam's: approve/approve, fraud/reject: observed 1/2, expected 1/4 -> kappa 0.33.
    assert text("digest-kappa", reviewers="Rita 0.33 (2), Sam 0.33 (2)") in digest


async def test_report_for_dates_the_manager_types(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from zoneinfo import ZoneInfo

    from services.reports import MAX_REPORT_DAYS

    project = await seed_project(sessions)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    now = await _seed_report_fixture(sessions, project)
    await manager.send_command("report")
    menu = await manager.expect(text("report-choose-period"))
    # Other dates: asked for, refused politely when unreadable, then the report of that range.
    await manager.press(menu, label("report-range-button"))
    await manager.expect(text("report-range-ask", limit=MAX_REPORT_DAYS))
    await manager.send_text("last Tuesday")
    await manager.expect(text("report-range-invalid", limit=MAX_REPORT_DAYS))
    local_today = now.astimezone(ZoneInfo(project.timezone)).date()
    first = local_today - dt.timedelta(days=3)
    await manager.send_text(f"{first:%d.%m.%Y} – {local_today:%d.%m.%Y}")
    span = f"{first:%d.%m.%Y}–{local_today:%d.%m.%Y}"  # the dates typed, as the title shows a range
    ranged = lines_of(await manager.expect(text("report-title", project=project.name, span=span)))
    assert ranged[:2] == [
        text("report-title", project=project.name, span=span),
        text("report-volume", received=5, reviewed=4),
    ]
    await manager.press(menu, label("report-range-button"))
    await manager.expect(text("report-range-ask", limit=MAX_REPORT_DAYS))
    await manager.send_command("cancel")
    await manager.expect(text("cancelled-generic"))
    await manager.send_text("01.11.2026")  # no longer waiting for dates
    await manager.expect(text("fallback-message"))


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
        promoter, reviewer = await add_users(session, (8001, "Pavel"), (8002, "Rita"))
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
    # The report as sent (HTML): the store table is its last part; without stores, the same report ends
    # before it.
    stored = rendered(i18n, "en", report_text, with_stores)
    store_table = "\n".join(
        ["", "", label("report-stores"), label("report-row", name="Ашан", received=2, reviewed=0, rate="—")]
    )
    assert stored.endswith(store_table)
    shown = rendered(i18n, "en", report_text, without)
    assert shown == stored.removesuffix(store_table)
    assert label("report-row", name="Pavel", received=2, reviewed=0, rate="—") in shown.split("\n")


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
    project = await seed_project(sessions, "Moscow", timezone="Europe/Moscow")
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
