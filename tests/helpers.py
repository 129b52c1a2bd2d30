"""Small helpers shared by tests: seeding through the services, reading the database, and the bot's texts by
their keys (`text`, `fragment`, `label`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import io
import os
import re
import signal
import string
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pytest
from aiogram.utils.i18n import I18n, gettext
from pydub import AudioSegment
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.settings import PROJECT_ROOT
from infra.storage import LocalAudioStore
from models import Audio, Contact, Invite, Membership, Project, Role, User
from models.base import utcnow
from services import intake, invites, projects
from services.audio import AudioBounds, check_recording
from services.forms import DEFAULT_FORM, localized, parse_form
from services.scorecard import DEFAULT_SCORECARD, parse_scorecard
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import buttons, message_text
from telegram_standin.markup import plain_text
from telegram_ui.cards import rendered
from telegram_ui.i18n import create_i18n
from tests.conftest import TOKEN

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from bot.app import Runtime
    from models import NpsCategory


# -- the bot's texts, by key ---------------------------------------------------------------------------
# Tests name the text they expect by its key in locales/*/LC_MESSAGES/messages.po, not by its copy: a copy
# edit then breaks no test, and a failing test says which text it waited for. The bot sends HTML (bot.factory
# sets parse_mode), and the stand-in keeps what the person sees, so `text` and `fragment` parse the markup
# away as Telegram does; `label` is a button's text, which Telegram shows as sent.
@cache
def _i18n() -> I18n:
    return create_i18n()


def template(key: str, locale: str = "en") -> str:
    """The catalogue's text for `key` in `locale`, placeholders unfilled. A key the catalogue lacks (gettext
    would quietly answer the key itself) or a locale it lacks fails here, naming them."""
    i18n = _i18n()
    if locale not in i18n.available_locales:
        raise AssertionError(f"no catalogue for locale {locale!r} (have {sorted(i18n.available_locales)})")
    found = str(rendered(i18n, locale, lambda: gettext(key)))
    if found == key or not found:
        raise AssertionError(f"text key {key!r} is not in the {locale!r} catalogue")
    return found


def text(key: str, locale: str = "en", /, **values: object) -> str:
    """`key` rendered as the bot renders it for `locale` (values put in with str.format, as the bot does:
    pass them as the bot passes them, HTML-escaped where it escapes), then as the person sees it: the HTML
    parsed away, entities decoded. Every placeholder needs a value (KeyError otherwise)."""
    return plain_text(template(key, locale).format(**values), "HTML")


def label(key: str, locale: str = "en", /, **values: object) -> str:
    """A button's label for `key`: rendered as `text` is, but not parsed (buttons carry no markup)."""
    return template(key, locale).format(**values)


_HOLE = "\ue000"  # a private-use character in place of each placeholder: no text of the bot has it


def fragment(key: str, locale: str = "en", /, **values: object) -> str:
    """The longest fixed piece of `key`'s text as the person sees it, between the placeholders not given in
    `values` (given as for `text`): for a message with values a test cannot know (an id, a date). Fails where that piece is shorter
    than four characters, as too weak to tell the message from another."""
    longest = max(_fixed_pieces(key, locale, values), key=len)
    if len(longest.strip()) < 4:
        raise AssertionError(f"text key {key!r} ({locale}) has no fixed piece of 4 characters")
    return longest


def pattern(key: str, locale: str = "en") -> re.Pattern[str]:
    """`key`'s text as the person sees it, each placeholder any text (newlines too): for checking a
    message holds the whole text of a key whose values a test cannot know, e.g.
    `assert pattern("card-flag-survey-fast").search(message_text(card))`."""
    return re.compile(".*?".join(map(re.escape, _fixed_pieces(key, locale))), re.DOTALL)


def _fixed_pieces(key: str, locale: str, values: dict[str, object] | None = None) -> list[str]:
    """The text as the person sees it, cut at its placeholders but those filled from `values` (markup
    parsed first, so a placeholder inside <b>...</b> cuts the visible text, not the tags)."""
    given = values or {}

    def hole(field: str | None, spec: str | None, conversion: str | None) -> str:
        if field is None:
            return ""
        if field not in given:
            return _HOLE
        return (
            "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        ).format(**given)

    holes = "".join(  # the literal pieces come back with "{{" and "}}" already undoubled
        literal + hole(field, spec, conversion)
        for literal, field, spec, conversion in string.Formatter().parse(template(key, locale))
    )
    return plain_text(holes, "HTML").split(_HOLE)


# -- a form's own words ---------------------------------------------------------------------------------
# A question's text and an option's label are data of the project's form settings, not the bot's texts: they
# are read from the form that defines them (the default form unless a test passes its own).
def form_question(key: str, locale: str = "en", form: dict[str, Any] = DEFAULT_FORM) -> str:
    """The text of question `key` of `form` in `locale`, as the form defines it."""
    [question] = [q for q in parse_form(form).questions if q.key == key]
    return localized(question.text, locale)


def form_option(key: str, option: str, locale: str = "en", form: dict[str, Any] = DEFAULT_FORM) -> str:
    """The label of `option` of question `key` of `form` in `locale`: the button the promoter presses."""
    [question] = [q for q in parse_form(form).questions if q.key == key]
    [found] = [o for o in question.options if o.key == option]
    return localized(found.text, locale)


def criterion(key: str, locale: str = "en", scorecard: dict[str, Any] = DEFAULT_SCORECARD) -> str:
    """The name of criterion `key` of `scorecard` (the default one unless given) in `locale`: the project's
    own words, shown on a card's mark button and in the promoter's feedback."""
    [found] = [c for c in parse_scorecard(scorecard).criteria if c.key == key]
    return localized(found.text, locale)


def asked(n: int, total: int, question: str, locale: str = "en") -> str:
    """Question `n` of `total` as the promoter sees it ("1/5. What did you offer?"; a hint, where the
    question has one, follows on the next line). `question`: its text, e.g. `form_question("product")`."""
    return text("intake-question", locale, n=n, total=total, text=html.escape(question, quote=False))


SEEDED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # when seeded projects were created


async def seed_project(
    sessions: async_sessionmaker[AsyncSession], name: str = "Tasting", **settings: Any
) -> Project:
    """A project of Demo Foods, made as an admin makes one; `settings`: the columns a test sets otherwise than
    a new project has them (e.g. `analysis_wait_minutes=0`), set before anyone joins. It was created on
    SEEDED_AT unless `created_at` says otherwise, so that a digest about any day the tests pick is due."""
    settings.setdefault("created_at", SEEDED_AT)
    async with sessions() as session, session.begin():
        return await projects.create_project(session, "Demo Foods", name, **settings)


async def seed_invite(
    sessions: async_sessionmaker[AsyncSession],
    project_id: int,
    role: Role = Role.PROMOTER,
    *,
    max_uses: int = 1,
    ttl: dt.timedelta | None = dt.timedelta(days=7),
    now: dt.datetime | None = None,
) -> Invite:
    async with sessions() as session, session.begin():
        return await invites.create_invite(session, project_id, role, max_uses=max_uses, ttl=ttl, now=now)


async def memberships_of(sessions: async_sessionmaker[AsyncSession], telegram_id: int) -> list[Membership]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Membership)
            .join(User, Membership.user_id == User.id)
            .where(User.telegram_id == telegram_id)
        )
        return list(rows)


async def invite_uses(sessions: async_sessionmaker[AsyncSession], invite_id: int) -> int:
    async with sessions() as session:
        invite = await session.get(Invite, invite_id)
        assert invite is not None
        return invite.uses


async def count_rows(sessions: async_sessionmaker[AsyncSession], model: type[Any], *where: Any) -> int:
    """How many rows of `model` there are (those matching `where`, if given): what a test checks was kept,
    made once or purged."""
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def queued_contact(
    sessions: async_sessionmaker[AsyncSession],
    project: Project,
    answers: dict[str, Any] | None = None,
    promoter_telegram_id: int = 8100,
) -> int:
    """A contact waiting for review (no recording), by a promoter who is only a name: for review tests."""
    from models import ContactStatus
    from models.base import utcnow

    async with sessions() as session, session.begin():
        promoter = User(telegram_id=promoter_telegram_id, first_name="Pavel")
        session.add(promoter)
        await session.flush()
        contact, _ = await add_contact(session, project.id, promoter.id)
        contact.form_answers = answers if answers is not None else {"product": "coffee"}
        contact.status, contact.queued_at = ContactStatus.QUEUED, utcnow()
        return contact.id


async def add_users(session: AsyncSession, *people: tuple[int, str]) -> list[User]:
    """Users added straight to the database, one for each (telegram id, first name), flushed so their ids
    are known: the promoters and reviewers of rows a test seeds directly, with no bot in between."""
    users = [User(telegram_id=telegram_id, first_name=name) for telegram_id, name in people]
    session.add_all(users)
    await session.flush()
    return users


async def add_contact(session: AsyncSession, project_id: int, promoter_id: int) -> tuple[Contact, Audio]:
    """A bare contact with its (unstored) audio row, for tests that seed analysis results directly."""
    contact = Contact(project_id=project_id, promoter_id=promoter_id, form_answers={})
    session.add(contact)
    await session.flush()
    audio = Audio(
        contact_id=contact.id, owner_id=promoter_id, storage_key=f"k{contact.id}", sha256=f"{contact.id:064d}"
    )
    session.add(audio)
    await session.flush()
    return contact, audio


async def add_nps_answer(
    session: AsyncSession,
    contact_id: int,
    score: int,
    category: NpsCategory,
    *,
    answered_at: dt.datetime | None = None,
) -> None:
    """A customer's answer on the 0-10 scale, on the survey intake made for the contact (a new survey where
    it made none, as for a contact seeded straight into the database)."""
    from models import NpsAnswer, NpsScale, NpsSurvey

    contact = await session.get(Contact, contact_id)
    assert contact is not None
    survey = await session.scalar(select(NpsSurvey).where(NpsSurvey.contact_id == contact_id))
    if survey is None:
        survey = NpsSurvey(
            contact_id=contact_id,
            project_id=contact.project_id,
            token=f"t{contact_id}",
            scale=NpsScale.ZERO_TO_TEN,
        )
        session.add(survey)
        await session.flush()
    answer = NpsAnswer(survey_id=survey.id, score=score, category=category)
    if answered_at is not None:
        answer.created_at = answered_at
    session.add(answer)


SCORE_OF = {"approve": 90.0, "reject": 40.0, "fraud": 0.0}  # a plausible score for each verdict


async def add_review(
    session: AsyncSession,
    contact_id: int,
    reviewer_id: int,
    verdict: Any,
    written_at: dt.datetime,
    *,
    marks: dict[str, int] | None = None,
    comment: str | None = None,
    assigned_at: dt.datetime | None = None,
) -> None:
    """A review already written (with its done assignment), for tests of what is computed from reviews.
    `assigned_at`: when its card went out, for tests of how long reviews take (the card closes as the review
    is written); left out, the assignment has no closing time to measure."""
    from models import Assignment, AssignmentStatus, Review

    assignment = Assignment(contact_id=contact_id, reviewer_id=reviewer_id, status=AssignmentStatus.DONE)
    if assigned_at is not None:
        assignment.assigned_at, assignment.closed_at = assigned_at, written_at
    session.add(assignment)
    await session.flush()
    session.add(
        Review(
            assignment_id=assignment.id,
            contact_id=contact_id,
            reviewer_id=reviewer_id,
            verdict=verdict,
            marks=marks or {},
            score=SCORE_OF[str(verdict)],
            comment=comment,
            created_at=written_at,
        )
    )


# -- people joining and reporting through the real bot ------------------------------------------------
async def join(
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    project: Project,
    role: Role,
    user_id: int,
    name: str,
    *,
    on_shift: bool = True,
    senior: bool = False,
) -> UserClient:
    invite = await seed_invite(sessions, project.id, role)
    person = tg.user(user_id, name, token=TOKEN, language_code="en")
    await person.send_command("start", f"inv_{invite.code}")
    await person.expect(joined_as(project, role))
    # The reply goes out before the bot's transaction commits: wait for the membership to be there, or the
    # update below could miss it (seen on a loaded machine).
    for _ in range(200):
        async with sessions() as session, session.begin():
            changed = await session.execute(
                update(Membership)
                .where(Membership.invite_id == invite.id)
                .values(on_shift=on_shift, is_senior=senior)
            )
        if changed.rowcount:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the membership was never committed")
    person.skip_pending()
    return person


async def join_as_promoter(
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    project: Project,
    user_id: int = 2001,
    language: str = "en",
) -> UserClient:
    invite = await seed_invite(sessions, project.id, Role.PROMOTER, max_uses=5)
    promoter = tg.user(user_id, "Pavel", token=TOKEN, language_code=language)
    await promoter.send_command("start", f"inv_{invite.code}")
    await promoter.expect(joined_as(project, Role.PROMOTER, language))
    # The enrolment prompt follows joining.
    await promoter.expect(text("enrol-prompt", language, phrase=label("enrol-phrase", language)))
    return promoter


async def invite_ten_reviewers(tg: StandIn, admin: UserClient, project: Project) -> None:
    """The admin, who writes in Russian, makes an invite of 10 uses for reviewers of `project` with /invite's
    buttons, up to the invite's message (the chat's last). The project's button ("Company / Project") and the
    counts are the handler's own (handlers/admin.py), not keys: they stay literal."""
    await admin.send_command("invite")
    await admin.press(await admin.expect(text("invite-choose-project", "ru")), f"Demo Foods / {project.name}")
    choose_role = text("invite-choose-role", "ru", project=project.name)
    await tg.wait_until(lambda: message_text(admin.last()) == choose_role)
    await admin.press(admin.last(), label("role-reviewer", "ru"))
    await tg.wait_until(lambda: message_text(admin.last()) == text("invite-choose-uses", "ru"))
    await admin.press(admin.last(), "10")
    await tg.wait_until(lambda: "start=inv_" in message_text(admin.last()))


def joined_as(project: Project, role: Role, locale: str = "en") -> str:
    """The answer to an invite just accepted: `role` in `project`."""
    return text(
        "invite-accepted",
        locale,
        role=label(f"role-{role.value}", locale),
        project=html.escape(project.name, quote=False),
    )


async def form_up_to_the_count(promoter: UserClient) -> None:
    """The default form's first three answers (coffee, 25–45, bought), up to its number question (4/5)."""
    await promoter.send_text(label("menu-new-contact"))
    await promoter.wait_last(asked(1, 5, form_question("product")))
    await promoter.press(promoter.last(), form_option("product", "coffee"))
    await promoter.wait_last(asked(2, 5, form_question("age")))
    await promoter.press(promoter.last(), form_option("age", "25_45"))
    await promoter.wait_last(asked(3, 5, form_question("bought")))
    await promoter.press(promoter.last(), label("btn-yes"))
    await promoter.wait_last(f"{asked(4, 5, form_question('quantity'))}\n{text('intake-hint-number')}")


async def fill_default_form(tg: StandIn, promoter: UserClient) -> None:
    await form_up_to_the_count(promoter)
    await finish_form_from_the_count(promoter)


async def finish_form_from_the_count(promoter: UserClient) -> None:
    """The count (2), consent and phone: what every walk through the default form ends with."""
    phone = asked(5, 5, form_question("phone"))
    await promoter.send_text("2")
    await promoter.wait_last(f"{phone}\n{text('intake-phone-consent')}")
    await promoter.press(promoter.last(), label("btn-consent-yes"))
    await promoter.wait_last(f"{phone}\n{text('intake-phone-number')}")
    await promoter.send_text("+7 912 345-67-89")
    await promoter.wait_last(text("intake-record"))


def wav_bytes(*parts: np.ndarray) -> bytes:
    samples = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    AudioSegment(samples.tobytes(), sample_width=2, frame_rate=16_000, channels=1).export(
        buffer, format="wav"
    )
    return buffer.getvalue()


async def stored_contact(
    sessions: async_sessionmaker[AsyncSession],
    store: LocalAudioStore,
    project: Project,
    promoter: User,
    data: bytes,
) -> int:
    """A contact stored as intake stores it, with `data` as its recording."""
    check = check_recording(data, AudioBounds(1, 600))
    async with sessions() as session, session.begin():
        stored = await session.get(Project, project.id)
        assert stored is not None
        contact, _ = await intake.create_contact(
            session,
            store,
            project=stored,
            promoter=promoter,
            answers={},
            recording=intake.Recording(data, check, ".wav", "audio/wav", None, None),
            source_update_id=None,
        )
        return contact.id


async def seed_promoter(
    sessions: async_sessionmaker[AsyncSession], project: Project, telegram_id: int = 1, name: str = "Pavel"
) -> User:
    """A promoter of `project`, added straight to the database."""
    async with sessions() as session, session.begin():
        promoter = User(telegram_id=telegram_id, first_name=name)
        session.add(promoter)
        await session.flush()
        session.add(Membership(user_id=promoter.id, project_id=project.id, role=Role.PROMOTER))
    return promoter


async def save_enrolment(
    sessions: async_sessionmaker[AsyncSession], store: LocalAudioStore, user: User, data: bytes
) -> None:
    """A promoter's voice sample stored as the bot stores it (the worker then embeds it)."""
    async with sessions() as session, session.begin():
        await intake.save_enrolment(
            session,
            store,
            user,
            intake.Recording(
                data, check_recording(data, AudioBounds(1, 600)), ".wav", "audio/wav", None, None
            ),
        )


async def seed_contacts(
    sessions: async_sessionmaker[AsyncSession],
    tg: StandIn,
    project: Project,
    promoter_tg: int,
    count: int,
    audio: Path,
    storage: Path,
) -> list[int]:
    data = audio.read_bytes()
    check = await asyncio.to_thread(check_recording, data, AudioBounds(1, 600))
    file_id = tg.upload(audio)
    ids = []
    base = utcnow() - dt.timedelta(minutes=30)
    async with sessions() as session, session.begin():
        promoter = (await session.scalars(select(User).where(User.telegram_id == promoter_tg))).one()
        stored = await session.get(Project, project.id)
        assert stored is not None
        for n in range(count):
            recording = intake.Recording(data + bytes([n]), check, ".ogg", "audio/ogg", file_id, f"u{n}")
            contact, _ = await intake.create_contact(
                session,
                LocalAudioStore(storage),
                project=stored,
                promoter=promoter,
                answers={"product": "tea"},
                recording=recording,
                source_update_id=None,
                now=base + dt.timedelta(seconds=n),
            )
            ids.append(contact.id)
    return ids


async def rita_with_a_card(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], project: Project
) -> tuple[UserClient, int, dict[str, Any]]:
    """Rita joins `project` as a reviewer and the review job sends her the card of a queued contact: (Rita, the
    contact's id, the card as first sent; its buttons are put on once it is sent)."""
    from jobs import review as review_jobs

    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    contact_id = await queued_contact(sessions, project)
    assert await review_jobs.dispatch(sessions, app.i18n) == 1
    card = await rita.expect(text("card-title", id=contact_id, project=project.name))
    return rita, contact_id, card


async def pavel_with_contacts(
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    project: Project,
    telegram_id: int,
    count: int,
    audio: Path,
    storage: Path,
) -> tuple[UserClient, list[int]]:
    """Pavel joins `project` as a promoter through the bot, and `count` contacts of his, each with `audio`
    as its recording (kept under `storage`), are made as intake makes them: (Pavel, the contacts' ids)."""
    pavel = await join(tg, sessions, project, Role.PROMOTER, telegram_id, "Pavel")
    return pavel, await seed_contacts(sessions, tg, project, telegram_id, count, audio, storage)


def cards_of(person: UserClient, locale: str = "en") -> list[dict]:  # type: ignore[type-arg]
    """The live review cards in `person`'s chat: messages that open with a card's title and still have their
    buttons (a closed card loses them; the recording sent before a card has none)."""
    title = pattern("card-title", locale)
    return [m for m in person.bot_messages() if title.match(message_text(m)) and buttons(m)]


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: int = 180, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` as a person runs it, output captured: one place for how the tests start the CLI."""
    command = [sys.executable, "-m", "bot", *args]
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=check
    )


async def spawn_bot(*args: str, env: dict[str, str], log: IO[bytes]) -> asyncio.subprocess.Process:
    """`python -m bot ARGS` started as a long-running process (the bot, a voice worker), in the project's
    root, its output appended to `log`: one place for how the tests start one."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env=env, cwd=str(PROJECT_ROOT), stdout=log, stderr=log
    )


def bot_env(
    tg: StandIn, database_url: str, tmp_path: Path, redis_url: str | None, **extra: str
) -> dict[str, str]:
    """The environment of a real `python -m bot run` subprocess against the stand-in."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "ADMIN_IDS"}}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(
        BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=tg.base_url,
        DATABASE_URL=database_url,
        STORAGE_ROOT=str(tmp_path / "audio"),
        MIGRATE_ON_START="false",
        THROTTLE_RATE_PER_SECOND="50",  # scripted people tap faster than anyone real
        THROTTLE_BURST="50",
        PYTHONPATH=str(PROJECT_ROOT),
        LOG_LEVEL="INFO",
        **extra,
    )
    return env


class BotProcess:
    """`command`: "run" (long polling) or "webhook" (several processes: Telegram lets one poller at a time)."""

    def __init__(self, env: dict[str, str], tg: StandIn, log: Path, command: str = "run") -> None:
        self.env, self.tg, self.command = env, tg, command
        self.log = log.open("ab")  # both runs' output, for a failing test's reader
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Started: its commands are set (both languages), the last step before it polls. (A long poll is
        only recorded as answered when it returns, so waiting for getUpdates itself would wait it out.)"""
        ready = len(self.tg.calls("setMyCommands")) + 2
        self.proc = await spawn_bot(self.command, env=self.env, log=self.log)
        await self.tg.wait_until(lambda: len(self.tg.calls("setMyCommands")) >= ready, 60)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        self.log.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def local_redis(url: str) -> Redis:
    """A client of the Redis at `url` (the caller closes it), or the test skipped where the redis package or
    the server is missing: tests of what the bot keeps in Redis run where one is at hand."""
    redis = pytest.importorskip("redis.asyncio")
    client: Redis = redis.Redis.from_url(url)
    try:
        await client.ping()
    except OSError:
        await client.aclose()
        pytest.skip(f"Redis is not reachable at {url}")
    return client


def webhook_env(port: int) -> dict[str, str]:
    """The settings of a bot process serving its own webhook on loopback."""
    return {
        "WEBHOOK_BASE_URL": f"http://127.0.0.1:{port}",
        "WEBHOOK_SECRET": "test-webhook-secret",
        "WEBHOOK_HOST": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
    }


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sign_init_data(token: str, user: dict[str, Any], auth_date: int, **extra: str) -> str:
    """Mini App initData signed as Telegram signs it (core.telegram.org/bots/webapps): the sorted fields
    joined by newlines, HMAC-SHA-256 under HMAC-SHA-256("WebAppData", bot token). For the console's tests."""
    import hashlib
    import hmac
    import json
    from urllib.parse import urlencode

    fields = {"auth_date": str(auth_date), "user": json.dumps(user, separators=(",", ":")), **extra}
    check = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields)


def speech_report(
    decision: str = "approve", confidence: float = 0.9, *checks: dict[str, Any]
) -> dict[str, Any]:
    done = [
        {"key": "greeting", "status": "done", "critical": False, "scorecard": None},
        {"key": "product", "status": "done", "critical": True, "scorecard": None},
    ]
    return {
        "language": "ru",
        "segments": [],
        "checks": list(checks) or done,
        "verdict": {"decision": decision, "confidence": confidence, "leaning": "approve", "reasons": []},
    }


async def store_speech(
    sessions: async_sessionmaker[AsyncSession], contact_id: int, speech: dict[str, Any]
) -> None:
    """The speech report the voice worker stores (jobs/voice.py) on the contact's analysis, finished,
    written directly instead of running Whisper (the analysis task is made where the contact has none)."""
    from models import AnalysisState, AnalysisTask

    async with sessions() as session, session.begin():
        audio = await session.scalar(select(Audio).where(Audio.contact_id == contact_id))
        assert audio is not None
        task = await session.scalar(select(AnalysisTask).where(AnalysisTask.audio_id == audio.id))
        if task is None:
            task = AnalysisTask(audio_id=audio.id)
            session.add(task)
        task.state, task.finished_at, task.speech = AnalysisState.DONE, utcnow(), speech
