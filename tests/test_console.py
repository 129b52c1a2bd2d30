"""The web console (issue #26) on the real database: Mini App sign-in by initData signed as Telegram signs
it, refusals (forged, stale, replayed, another project's contact, a guessed or reused link) that are logged,
roles, and the pages a manager sees."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from bot.app import Runtime
from infra.db import Database
from infra.settings import Settings
from infra.storage import LocalAudioStore
from models import (
    AlertKind,
    AlertStatus,
    AnalysisTask,
    Audio,
    Contact,
    ContactStatus,
    Dispute,
    FlagKind,
    ManagerAlert,
    Membership,
    NpsCategory,
    Project,
    Review,
    Role,
    User,
    Verdict,
    VoiceFlag,
)
from models.base import utcnow
from services import console_auth
from services.console import EXPORT_TITLES
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.conftest import ADMIN_ID, TOKEN
from tests.helpers import (
    add_nps_answer,
    add_review,
    join,
    seed_project,
    seed_promoter,
    sign_init_data,
    stored_contact,
    wav_bytes,
)
from web.app import create_console_app
from web.i18n import catalog

MANAGER_TG, REVIEWER_TG, PROMOTER_TG, OTHER_MANAGER_TG = 3001, 3002, 3003, 3004


@dataclass
class World:
    a: Project
    b: Project
    contact_a: int
    contact_b: int
    recording: bytes
    reviewer_id: int


async def _member(
    sessions: async_sessionmaker[AsyncSession], telegram_id: int, name: str, project: Project, role: Role
) -> User:
    async with sessions() as session, session.begin():
        user = User(telegram_id=telegram_id, first_name=name, locale="en")
        session.add(user)
        await session.flush()
        session.add(Membership(user_id=user.id, project_id=project.id, role=role))
    return user


@pytest.fixture
async def world(sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> World:
    """Project A (its manager, reviewer and promoter, a reviewed and flagged contact with a recording and an
    alert) and project B (another manager, one contact)."""
    a = await seed_project(sessions, "Tasting")
    b = await seed_project(sessions, "Other")
    await _member(sessions, MANAGER_TG, "Mila", a, Role.MANAGER)
    reviewer = await _member(sessions, REVIEWER_TG, "Roma", a, Role.REVIEWER)
    await _member(sessions, OTHER_MANAGER_TG, "Boris", b, Role.MANAGER)
    promoter = await seed_promoter(sessions, a, PROMOTER_TG, "Pavel")
    store = LocalAudioStore(tmp_path / "audio")
    t = np.linspace(0, 2, 32_000, endpoint=False)
    recording = wav_bytes(0.3 * np.sin(2 * np.pi * 220 * t))
    contact_a = await stored_contact(sessions, store, a, promoter, recording)
    contact_b = await stored_contact(
        sessions, store, b, promoter, wav_bytes(0.3 * np.sin(2 * np.pi * 330 * t))
    )
    async with sessions() as session, session.begin():
        found = await session.get(Contact, contact_a)
        assert found is not None
        found.form_answers = {"store": "Pyaterochka 12", "product": "coffee"}
        found.final_verdict, found.score = Verdict.FRAUD, 0.0
        await add_review(session, contact_a, reviewer.id, Verdict.FRAUD, utcnow(), marks={"greeting": 0})
        session.add(VoiceFlag(contact_id=contact_a, kind=FlagKind.CUSTOMER_IS_PROMOTER, score=0.91))
        session.add(
            ManagerAlert(
                project_id=a.id,
                kind=AlertKind.FRAUD,
                contact_id=contact_a,
                status=AlertStatus.RESOLVED,
                resolution_note="talked to the promoter",
                resolved_at=utcnow(),
            )
        )
    return World(a, b, contact_a, contact_b, recording, reviewer.id)


@pytest.fixture
async def client(settings: Settings, db: Database, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_console_app(settings, db=db, store=LocalAudioStore(tmp_path / "audio"))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def init_data(
    telegram_id: int, *, age: dt.timedelta = dt.timedelta(0), token: str = TOKEN, **user: Any
) -> str:
    when = int((utcnow() - age).timestamp())
    return sign_init_data(
        token, {"id": telegram_id, "first_name": "Mila", "language_code": "en", **user}, when, query_id="AAF1"
    )


async def sign_in(client: TestClient[Any, Any], data: str) -> tuple[int, dict[str, Any]]:
    response = await client.post("/console/auth/telegram", data={"init_data": data})
    return response.status, await response.json()


async def test_a_manager_signs_in_through_the_mini_app_and_sees_their_projects(
    client: TestClient[Any, Any], world: World
) -> None:
    response = await client.post("/console/auth/telegram", data={"init_data": init_data(MANAGER_TG)})
    assert response.status == 200 and (await response.json())["ok"]
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie

    contacts = await client.get("/console/contacts")
    page = await contacts.text()
    assert contacts.status == 200
    assert f'data-contact="{world.contact_a}"' in page and f'data-contact="{world.contact_b}"' not in page
    assert "Pyaterochka 12" in page

    # Filters: by verdict and store the contact stays; by another verdict or flag it goes.
    async def listed(**query: str) -> list[int]:
        answer = await client.get("/console/api/contacts", params=query)
        assert answer.status == 200
        return [row["id"] for row in (await answer.json())["rows"]]

    assert await listed(verdict="fraud", store="Pyaterochka 12") == [world.contact_a]
    assert await listed(flag="customer_is_promoter", reviewer=str(world.reviewer_id)) == [world.contact_a]
    assert await listed(verdict="approve") == []
    assert await listed(flag="duplicate_recording") == []
    assert await listed(sort="score", project=str(world.a.id)) == [world.contact_a]

    detail = await client.get(f"/console/contacts/{world.contact_a}")
    text = await detail.text()
    assert detail.status == 200
    assert f'src="/console/contacts/{world.contact_a}/audio"' in text
    assert "customer is the promoter" in text and "talked to the promoter" in text and "Roma" in text

    audio = await client.get(f"/console/contacts/{world.contact_a}/audio")
    assert audio.status == 200 and await audio.read() == world.recording
    part = await client.get(f"/console/contacts/{world.contact_a}/audio", headers={"Range": "bytes=0-99"})
    assert part.status == 206 and await part.read() == world.recording[:100]

    for name in ("dashboard", "reviewers", "alerts"):
        shown = await client.get(f"/console/{name}")
        assert shown.status == 200, name
    board = await (await client.get("/console/dashboard")).text()
    assert "<svg" in board and "Last 7 days" in board
    assert "Roma" in await (await client.get("/console/reviewers")).text()
    assert "talked to the promoter" in await (await client.get("/console/alerts")).text()

    exported = await client.get("/console/contacts/export.csv")
    rows = list(csv.reader(io.StringIO((await exported.read()).decode("utf-8-sig"))))
    assert exported.status == 200 and [int(r[0]) for r in rows[1:]] == [world.contact_a]
    assert rows[0] == [catalog("en")[key] for key in EXPORT_TITLES]


async def _promoters_contacts(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, project: Project, *tones: int
) -> tuple[User, list[int]]:
    """Project A's promoter and one stored contact of his per tone (distinct audio, so no duplicate)."""
    async with sessions() as session:
        promoter = await session.scalar(select(User).where(User.telegram_id == PROMOTER_TG))
    assert promoter is not None
    store = LocalAudioStore(tmp_path / "audio")
    t = np.linspace(0, 2, 32_000, endpoint=False)
    contacts = [
        await stored_contact(sessions, store, project, promoter, wav_bytes(0.3 * np.sin(2 * np.pi * f * t)))
        for f in tones
    ]
    return promoter, contacts


async def _speech(session: AsyncSession, contact_id: int, said: str) -> None:
    """The contact's speech report with one transcript line (as services.speech writes it)."""
    task = await session.scalar(
        select(AnalysisTask)
        .join(Audio, Audio.id == AnalysisTask.audio_id)
        .where(Audio.contact_id == contact_id)
    )
    assert task is not None
    task.speech = {"segments": [{"speaker": "customer", "start": 0.0, "end": 2.0, "text": said}]}


async def test_contacts_filter_by_dispute_nps_and_text(
    client: TestClient[Any, Any], world: World, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Contact A has a reviewer's comment and no customer's answer; the disputed one a detractor's answer;
    the third a promoter's answer and a transcript; project B's contact says the same words, unseen."""
    promoter, (disputed, spoken) = await _promoters_contacts(sessions, tmp_path, world.a, 440, 550)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Review)
            .where(Review.contact_id == world.contact_a)
            .values(comment="Pushy: 100% sure the customer is his brother")
        )
        session.add(Dispute(contact_id=disputed, promoter_id=promoter.id, reason="the customer was real"))
        for cid, score, category in (
            (disputed, 3, NpsCategory.DETRACTOR),
            (spoken, 10, NpsCategory.PROMOTER),
        ):
            await add_nps_answer(session, cid, score, category)
        await _speech(session, spoken, 'Хочу два кофе "Gold", пожалуйста')
        await _speech(session, world.contact_b, 'Хочу два кофе "Gold", пожалуйста')
    assert (await sign_in(client, init_data(MANAGER_TG)))[0] == 200

    async def listed(**query: str) -> set[int]:
        answer = await client.get("/console/api/contacts", params=query)
        assert answer.status == 200
        return {row["id"] for row in (await answer.json())["rows"]}

    assert await listed() == {world.contact_a, disputed, spoken}
    assert await listed(dispute="yes") == {disputed}
    assert await listed(dispute="no") == {world.contact_a, spoken}
    assert await listed(nps="detractor") == {disputed}
    assert await listed(nps="promoter") == {spoken}
    assert await listed(nps="passive") == set()
    assert await listed(nps="none") == {world.contact_a}
    assert await listed(nps="promoter", dispute="yes") == set()
    # Text: in reviewers' comments (ASCII case folded everywhere), and in the transcript, Cyrillic and
    # quotes included; LIKE's wildcards are searched for literally; another project's words stay unseen.
    assert await listed(q="pushy") == {world.contact_a}
    assert await listed(q="100%") == {world.contact_a}
    assert await listed(q="%") == {world.contact_a}
    assert await listed(q="_") == set()
    assert await listed(q="кофе") == {spoken}
    assert await listed(q='"Gold"') == {spoken}
    assert await listed(q="два кофе", nps="promoter") == {spoken}
    assert await listed(q="brother", dispute="yes") == set()
    assert await listed(q="nowhere said") == set()

    page = await (await client.get("/console/contacts", params={"nps": "detractor", "q": "кофе"})).text()
    assert '<option value="detractor" selected>' in page and 'value="кофе"' in page
    assert "nps=detractor" in page and "q=%D0%BA%D0%BE%D1%84%D0%B5" in page  # the export keeps them
    exported = await client.get("/console/contacts/export.csv", params={"dispute": "yes"})
    rows = list(csv.reader(io.StringIO((await exported.read()).decode("utf-8-sig"))))
    assert [int(r[0]) for r in rows[1:]] == [disputed]


async def test_pages_speak_the_persons_language(
    client: TestClient[Any, Any], world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(User).where(User.telegram_id == MANAGER_TG).values(locale="ru"))
    assert (await sign_in(client, init_data(MANAGER_TG)))[0] == 200
    page = await (await client.get("/console/contacts")).text()
    assert "Контакты" in page and 'lang="ru"' in page
    # The export's column titles too (they were English whatever the language).
    exported = await client.get("/console/contacts/export.csv")
    header = next(csv.reader(io.StringIO((await exported.read()).decode("utf-8-sig"))))
    ru, en = catalog("ru"), catalog("en")
    assert header == [ru[key] for key in EXPORT_TITLES]
    assert header[2] != en["export-submitted-utc"] and header[0] != en["contact"]


async def test_forged_stale_and_replayed_init_data_are_refused_and_logged(
    client: TestClient[Any, Any], world: World
) -> None:
    genuine = init_data(MANAGER_TG)
    tampered = re.sub(r"%22id%22%3A\d+", f"%22id%22%3A{OTHER_MANAGER_TG}", genuine)
    assert tampered != genuine
    with capture_logs() as logs:
        assert await sign_in(client, init_data(MANAGER_TG, token="654321:another-bot")) == (
            401,
            {"ok": False, "reason": "init_data_forged"},
        )
        assert (await sign_in(client, tampered))[1]["reason"] == "init_data_forged"
        assert (await sign_in(client, "user=%7B%7D&auth_date=1"))[1]["reason"] == "init_data_forged"
        assert (await sign_in(client, init_data(MANAGER_TG, age=dt.timedelta(hours=2))))[1][
            "reason"
        ] == "init_data_stale"
        assert (await sign_in(client, genuine))[0] == 200
        client.session.cookie_jar.clear()
        assert await sign_in(client, genuine) == (401, {"ok": False, "reason": "init_data_replayed"})
        assert (await client.get("/console/contacts")).status == 401
    refused = [entry["reason"] for entry in logs if entry["event"] == "console_refused"]
    assert refused == [
        "init_data_forged",
        "init_data_forged",
        "init_data_forged",
        "init_data_stale",
        "init_data_replayed",
        "no_session",
    ]


async def test_roles_scope_every_page_and_call(client: TestClient[Any, Any], world: World) -> None:
    for outsider in (REVIEWER_TG, PROMOTER_TG, 7777):  # a reviewer, a promoter, a stranger
        assert await sign_in(client, init_data(outsider)) == (403, {"ok": False, "reason": "no_console_role"})

    assert (await sign_in(client, init_data(MANAGER_TG)))[0] == 200
    with capture_logs() as logs:
        for path in (
            f"/console/contacts/{world.contact_b}",
            f"/console/contacts/{world.contact_b}/audio",
            f"/console/contacts?project={world.b.id}",
            f"/console/api/contacts?project={world.b.id}",
            f"/console/dashboard?project={world.b.id}",
            f"/console/contacts/export.csv?project={world.b.id}",
            "/console/contacts/999999",
        ):
            assert (await client.get(path)).status == 403, path
    assert {entry["reason"] for entry in logs if entry["event"] == "console_refused"} == {
        "contact_out_of_scope",
        "audio_out_of_scope",
        "project_out_of_scope",
    }

    # A cookie edited to another person's id no longer matches its signature.
    cookie = next(iter(client.session.cookie_jar)).value
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies(
        {"fc_console": cookie.replace(str(MANAGER_TG), str(ADMIN_ID), 1)}
    )
    assert (await client.get("/console/contacts")).status == 401

    client.session.cookie_jar.clear()
    assert (await sign_in(client, init_data(ADMIN_ID)))[0] == 200  # the global admin sees every project
    page = await (await client.get("/console/contacts")).text()
    assert f'data-contact="{world.contact_a}"' in page and f'data-contact="{world.contact_b}"' in page


async def test_the_console_link_from_the_bot_signs_in_once(
    app: Runtime,
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    client: TestClient[Any, Any],
) -> None:
    project = await seed_project(sessions)
    manager = await join(tg, sessions, project, Role.MANAGER, 3101, "Mila")
    reviewer = await join(tg, sessions, project, Role.REVIEWER, 3102, "Roma")

    await reviewer.send_command("console")
    assert "for managers and administrators" in message_text(await reviewer.expect("console"))

    await manager.send_command("console")
    reply = message_text(await manager.expect("sign-in link"))
    token = re.search(r"/console/auth/link/([A-Za-z0-9_-]+)", reply)
    assert token is not None
    link = f"/console/auth/link/{token.group(1)}"

    assert (await client.get(link)).status == 200  # the page only offers a button: nothing is spent
    first = await client.post(link, allow_redirects=False)
    assert first.status == 303 and first.headers["Location"] == "/console/contacts"
    assert (await client.get("/console/contacts")).status == 200

    client.session.cookie_jar.clear()
    with capture_logs() as logs:
        assert (await client.post(link, allow_redirects=False)).status == 403  # used
        assert (await client.get(link)).status == 401
        guessed = "/console/auth/link/" + "A" * 32
        assert (await client.post(guessed, allow_redirects=False)).status == 403
        assert (await client.get(guessed)).status == 403
    assert [e["reason"] for e in logs if e["event"] == "console_refused"] == [
        "link_refused",
        "link_used",
        "link_refused",
        "link_unknown",
    ]

    # A link past its time is refused too.
    async with sessions() as session, session.begin():
        user = (await session.scalars(select(User).where(User.telegram_id == 3101))).one()
        stale = await console_auth.create_link(
            session, user, dt.timedelta(minutes=15), now=utcnow() - dt.timedelta(hours=1)
        )
    assert (await client.post(f"/console/auth/link/{stale}", allow_redirects=False)).status == 403


async def test_the_webhook_process_can_serve_the_console_beside_the_webhook(settings: Settings) -> None:
    from bot.app import Readiness, http_app

    beside = http_app(settings.model_copy(update={"web_with_webhook": True}), Readiness(), webhook=True)
    async with TestClient(TestServer(beside)) as served:
        page = await served.get("/console/")
        assert page.status == 200 and "/console/auth/telegram" in await page.text()
        assert (await served.get("/console/contacts")).status == 401
    alone = http_app(settings, Readiness(), webhook=True)
    async with TestClient(TestServer(alone)) as served:
        assert (await served.get("/console/")).status == 404


async def _routed_world(
    world: World, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> tuple[int, int, int, dt.datetime, str]:
    """Besides contact A (fraud, people, Pyaterochka 12, today), three more of project A: one decided by
    speech routing (approved, Magnit 3, today, a promoter's answer), one routed to people (rejected,
    Magnit 3, today) and one a week ago (approved, Magnit 3, a detractor's answer). Project B's contact,
    decided automatically too, shows nowhere."""
    async with sessions() as session:
        zone = (await session.get(Project, world.a.id)).timezone  # type: ignore[union-attr]
    _, (automatic, person, earlier) = await _promoters_contacts(sessions, tmp_path, world.a, 440, 550, 660)
    now = utcnow()
    async with sessions() as session, session.begin():
        for cid, verdict, routed, when in (
            (automatic, Verdict.APPROVE, "automatic", now),
            (person, Verdict.REJECT, "person", now),
            (earlier, Verdict.APPROVE, None, now - dt.timedelta(days=7)),
            (world.contact_b, Verdict.APPROVE, "automatic", now),
        ):
            await session.execute(
                update(Contact)
                .where(Contact.id == cid)
                .values(
                    final_verdict=verdict,
                    routed_to=routed,
                    submitted_at=when,
                    form_answers={"store": "Magnit 3"},
                )
            )
        for cid, score, category in (
            (automatic, 9, NpsCategory.PROMOTER),
            (earlier, 2, NpsCategory.DETRACTOR),
        ):
            await add_nps_answer(session, cid, score, category)
    return automatic, person, earlier, now, zone


async def test_contacts_filter_automatic_or_people(
    client: TestClient[Any, Any], world: World, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    automatic, person, earlier, now, _zone = await _routed_world(world, sessions, tmp_path)
    assert (await sign_in(client, init_data(MANAGER_TG)))[0] == 200

    async def listed(**query: str) -> set[int]:
        answer = await client.get(
            "/console/api/contacts", params={"from": str(now.date() - dt.timedelta(days=9)), **query}
        )
        assert answer.status == 200
        return {row["id"] for row in (await answer.json())["rows"]}

    assert await listed(routed="automatic") == {automatic}
    assert await listed(routed="person") == {world.contact_a, person, earlier}  # never routed: people
    assert await listed(routed="automatic", verdict="reject") == set()
    assert await listed(routed="anything") == {world.contact_a, automatic, person, earlier}  # ignored
    page = await (await client.get("/console/contacts", params={"routed": "automatic"})).text()
    assert '<option value="automatic" selected>' in page and 'class="auto"' in page
    assert "routed=automatic" in page  # the export keeps it
    detail = await (await client.get(f"/console/contacts/{automatic}")).text()
    assert re.search(r'id="decided-by">automatic checks<', detail)


async def test_dashboard_breakdowns_weeks_and_automatic_share(
    client: TestClient[Any, Any], world: World, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Counts per week, per project, store and promoter, and the automatic share, from the real database;
    the page draws each as a chart."""
    from services import console

    _automatic, _person, _earlier, now, zone = await _routed_world(world, sessions, tmp_path)
    assert (await sign_in(client, init_data(MANAGER_TG)))[0] == 200
    # The services' figures, counted in the project's own days.
    today = now.astimezone(ZoneInfo(zone)).date()
    async with sessions() as session:
        viewer = await console.viewer_for(session, MANAGER_TG, [])
        assert viewer is not None
        board = await console.dashboard(session, viewer, today)
    this_week = board.this_week
    assert (this_week.volume, this_week.reviewed, this_week.automatic) == (3, 3, 1)
    assert (this_week.approved, this_week.rejected, this_week.fraud) == (1, 1, 1)
    assert this_week.automatic_share == pytest.approx(1 / 3)
    # Customers' answers count on the day they came (both came today); per store, for the contact rated.
    assert (this_week.nps_answers, this_week.nps) == (2, 0.0)
    assert (board.last_week.volume, board.last_week.automatic_share, board.last_week.nps) == (1, 0.0, None)
    assert len(board.weeks) == console.WEEKS and board.weeks[-1].day.weekday() == 0
    assert board.weeks[-1].day <= today < board.weeks[-1].day + dt.timedelta(days=7)
    assert sum(w.volume for w in board.weeks) == 4 and sum(w.rejected for w in board.weeks) == 1
    assert [(s.label, s.volume) for s in board.by_project] == [("Tasting", 4)]
    stores = {s.label: s for s in board.by_store}
    assert set(stores) == {"Magnit 3", "Pyaterochka 12"}
    magnit = stores["Magnit 3"]
    assert (magnit.volume, magnit.approved, magnit.rejected, magnit.automatic) == (3, 2, 1, 1)
    assert (magnit.nps_answers, magnit.nps) == (2, 0.0)  # one promoter, one detractor
    assert stores["Pyaterochka 12"].fraud_rate == 1.0
    assert [(s.label, s.volume, s.rejection_rate) for s in board.by_promoter] == [("Pavel", 4, 0.25)]

    shown = await (await client.get("/console/dashboard")).text()
    assert 'id="automatic-this-week">33%<' in shown
    for section in ("weekly", "by-project", "by-store", "by-promoter"):
        assert f'id="{section}"' in shown, section
    by_store = shown[shown.index('id="by-store"') : shown.index('id="by-promoter"')]
    assert by_store.count("<svg") == 1 and "Magnit 3" in by_store and "Pyaterochka 12" in by_store
    assert "Other" not in shown[shown.index('id="by-project"') : shown.index('id="by-store"')]
    assert today.isoformat() in shown and board.weeks[-1].day.isoformat() in shown


def test_every_console_text_is_in_russian_and_english() -> None:
    """Every literal t("key") of the console's templates and code is in both console catalogs, which hold
    the same keys (keys built from values, like "verdict-" ~ v, are checked by the pages' tests)."""
    web = Path(__file__).resolve().parent.parent / "web"
    used: set[str] = set()
    for path in [*web.glob("templates/*.html"), *web.glob("*.py")]:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9-]+)["']\s*\)""", path.read_text(encoding="utf-8")))
    assert len(used) > 40
    en, ru = catalog("en"), catalog("ru")
    assert sorted(k for k in used if not en.get(k, "").strip() or not ru.get(k, "").strip()) == []
    assert set(en) == set(ru)


CLIENT_TG = 3005


async def test_a_client_contact_sees_only_billing_and_nps_of_their_projects(
    client: TestClient[Any, Any], world: World, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Project A's client contact: paid contacts (approved, not disputed) per month and store, and the
    customers' NPS, of project A only; every contact, person and alert page refused and logged."""
    from services import console

    await _member(sessions, CLIENT_TG, "Klara", world.a, Role.CLIENT)
    _, (paid_now, paid_before, rejected) = await _promoters_contacts(
        sessions, tmp_path, world.a, 440, 550, 660
    )
    now = utcnow()
    async with sessions() as session, session.begin():
        for cid, verdict, when, shop in (
            (paid_now, Verdict.APPROVE, now, "Magnit 3"),
            (paid_before, Verdict.APPROVE, now - dt.timedelta(days=40), "Magnit 3"),
            (rejected, Verdict.REJECT, now, "Magnit 3"),
            (world.contact_b, Verdict.APPROVE, now, "Elsewhere 9"),
        ):
            await session.execute(
                update(Contact)
                .where(Contact.id == cid)
                .values(
                    final_verdict=verdict,
                    status=ContactStatus.REVIEWED,
                    submitted_at=when,
                    form_answers={"store": shop},
                )
            )
        for cid, score, category in (
            (paid_now, 10, NpsCategory.PROMOTER),
            (rejected, 7, NpsCategory.PASSIVE),
            (world.contact_b, 0, NpsCategory.DETRACTOR),
        ):
            await add_nps_answer(session, cid, score, category)

    status, answer = await sign_in(client, init_data(CLIENT_TG))
    assert status == 200 and answer["next"] == "/console/client"
    page = await client.get("/console/client")
    text = await page.text()
    assert page.status == 200 and "Billing and NPS" in text
    assert "Magnit 3" in text and "Elsewhere 9" not in text and "Tasting" in text and "Other" not in text
    assert "Pavel" not in text and "Roma" not in text  # no agency people
    assert 'href="/console/contacts"' not in text  # the manager's pages are not offered
    assert re.search(r"<th>Paid contacts</th><td>2</td>", text)
    assert (await client.get("/console/", allow_redirects=False)).headers["Location"] == "/console/client"

    with capture_logs() as logs:
        for path in (
            "/console/contacts",
            "/console/api/contacts",
            "/console/contacts/export.csv",
            f"/console/contacts/{world.contact_a}",
            f"/console/contacts/{world.contact_a}/audio",
            "/console/dashboard",
            "/console/reviewers",
            "/console/alerts",
        ):
            assert (await client.get(path)).status == 403, path
        assert (await client.get(f"/console/client?project={world.b.id}")).status == 403
    reasons = [entry["reason"] for entry in logs if entry["event"] == "console_refused"]
    assert reasons == ["client_out_of_scope"] * 8 + ["project_out_of_scope"]

    # The figures, per month in the project's zone.
    async with sessions() as session:
        viewer = await console.viewer_for(session, CLIENT_TG, [])
        assert viewer is not None and viewer.is_client_only and viewer.project_ids == frozenset()
        view = await console.client_view(session, viewer, now, months=3)
    zone = ZoneInfo(world.a.timezone)
    paid = {m.month: m.validated for m in view.months if m.validated}
    months = {console._month_start(now.astimezone(zone).date())}
    months.add(console._month_start((now - dt.timedelta(days=40)).astimezone(zone).date()))
    assert paid == dict.fromkeys(months, 1)
    assert view.stores == [("Magnit 3", 2)] and [p.name for p in view.projects] == ["Tasting"]
    this_month = view.months[-1]
    assert (this_month.nps_answers, this_month.nps_promoters, this_month.nps_passives) == (2, 1, 1)
    assert this_month.nps == 50.0 and view.total.validated == 2

    # A manager sees the same page for their own projects, and may not ask for another's.
    client.session.cookie_jar.clear()
    assert (await sign_in(client, init_data(OTHER_MANAGER_TG)))[1]["next"] == "/console/contacts"
    other = await (await client.get("/console/client")).text()
    assert "Elsewhere 9" in other and "Magnit 3" not in other
    assert (await client.get(f"/console/client?project={world.a.id}")).status == 403


async def test_a_client_contacts_link_lands_on_their_page(
    client: TestClient[Any, Any], world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    klara = await _member(sessions, CLIENT_TG, "Klara", world.a, Role.CLIENT)
    async with sessions() as session, session.begin():
        token = await console_auth.create_link(session, klara, dt.timedelta(minutes=15))
    signed = await client.post(f"/console/auth/link/{token}", allow_redirects=False)
    assert signed.status == 303 and signed.headers["Location"] == "/console/client"
    assert (await client.get("/console/client")).status == 200


async def test_a_client_contact_gets_a_console_link_from_the_bot(
    app: Runtime,
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    client: TestClient[Any, Any],
) -> None:
    project = await seed_project(sessions)
    klara = await join(tg, sessions, project, Role.CLIENT, 3105, "Klara")
    await klara.send_command("console")
    token = re.search(
        r"/console/auth/link/([A-Za-z0-9_-]+)", message_text(await klara.expect("sign-in link"))
    )
    assert token is not None
    signed = await client.post(f"/console/auth/link/{token.group(1)}", allow_redirects=False)
    assert signed.status == 303 and signed.headers["Location"] == "/console/client"


@pytest.mark.parametrize("utc_hour", [20, 21, 23])
async def test_the_default_week_is_the_projects_own_days(
    settings: Settings,
    db: Database,
    world: World,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    utc_hour: int,
) -> None:
    """A Moscow manager's default week ends on Moscow's today: at 21:00-24:00 UTC Moscow is already on the
    next day, and the contacts page (its date filter read in UTC) hid the night's contacts."""
    now = dt.datetime(2026, 12, 5, utc_hour, 30, tzinfo=dt.UTC)
    async with sessions() as session, session.begin():
        found = await session.get(Contact, world.contact_a)
        assert found is not None
        found.submitted_at = now - dt.timedelta(minutes=20)
    app = create_console_app(settings, db=db, store=LocalAudioStore(tmp_path / "audio"), clock=lambda: now)
    async with TestClient(TestServer(app)) as client:
        assert (await sign_in(client, init_data(MANAGER_TG, age=utcnow() - now)))[0] == 200
        rows = (await (await client.get("/console/api/contacts")).json())["rows"]
        assert [row["id"] for row in rows] == [world.contact_a]
        page = await (await client.get("/console/contacts")).text()
        moscow_today = (now + dt.timedelta(hours=3)).date().isoformat()
        assert f'value="{moscow_today}"' in page and f'data-contact="{world.contact_a}"' in page
