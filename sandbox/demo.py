"""`fieldcheck sandbox`: the whole bot offline, played through by scripted people, with transcripts.

Everything real runs: the aiogram bot over HTTP, SQLite through Alembic, the scheduler. Only Telegram is
replaced, by the local stand-in (telegram_standin). Later features add their scenes to `SCENES`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiogram.utils.i18n import I18n
from aiohttp import web
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import Database
from infra.settings import Settings
from infra.storage import LocalAudioStore, create_audio_store
from jobs import digest as digest_jobs
from jobs import review as review_jobs
from jobs.voice import run_worker
from models import AnalysisState, AnalysisTask, Audio, OutboxMessage, Project, Role, User
from models.base import utcnow
from sandbox import demo_audio
from sandbox.harness import running_bot
from services import console_auth, invites, outbox_keys, projects
from services.speech.recognizer import load_recognizer
from services.voice.encoder import load_encoder
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import message_text
from web.app import PREFIX, create_console_app

SANDBOX_TOKEN = "100001:sandbox-token-not-secret"
ADMIN_ID = 1001
MANAGER_ID = 5001  # Maria, who signs in to the web console at the end
PATIENCE = 30.0  # seconds a scripted person waits for a reply on a busy machine
CHROMIUM = Path("/usr/bin/chromium")  # Debian's, as the browser tests use (scripts/setup installs it)
DASHBOARD_PNG = "console-dashboard.png"
CONSOLE_LINK_TTL = dt.timedelta(hours=12)  # long enough to open it after the run (`sandbox --serve`)

log = structlog.get_logger(__name__)


@dataclass
class Sandbox:
    tg: StandIn
    settings: Settings
    db: Database
    out_dir: Path
    i18n: I18n
    people: dict[str, UserClient] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.db.sessions

    def person(self, key: str, user_id: int, name: str, language: str = "ru") -> UserClient:
        self.people[key] = self.tg.user(user_id, name, token=SANDBOX_TOKEN, language_code=language)
        return self.people[key]


@dataclass
class SandboxResult:
    transcript: str
    out_dir: Path
    notes: list[str]
    console_address: str | None = None  # where the web console was served during the run
    console_link: str | None = None  # the manager's one-time sign-in link, not spent
    screenshot: Path | None = None  # the dashboard in Debian's chromium, where it is installed


Scene = Callable[[Sandbox], Awaitable[None]]


async def scene_onboarding(box: Sandbox) -> None:
    """An admin creates a promoter invite with buttons; the promoter joins; a stranger's bad link is refused."""
    admin = box.person("admin", ADMIN_ID, "Anna (admin)")
    await admin.send_command("start")
    await admin.expect("Fieldcheck")
    await admin.send_command("invite")
    card = await admin.expect("проект")
    await admin.press(card, "Demo Foods / Tasting Moscow")
    await box.tg.wait_until(lambda: "роль" in message_text(admin.last()))
    await admin.press(admin.last(), "промоутер")
    await box.tg.wait_until(lambda: "Сколько" in message_text(admin.last()))
    await admin.press(admin.last(), "10")
    await box.tg.wait_until(lambda: "start=inv_" in message_text(admin.last()))
    link = re.search(r"start=(inv_\w+)", message_text(admin.last()))
    assert link is not None
    box.notes.append(f"promoter invite: {link.group(1)}")

    promoter = box.person("promoter", 2001, "Pavel")
    await promoter.send_command("start", link.group(1))
    await promoter.expect("промоутер")

    stranger = box.person("stranger", 3001, "Stranger", language="en")
    await stranger.send_command("start", "inv_doesnotexist")
    await stranger.expect("not valid")


async def _invite(box: Sandbox, role: Role) -> str:
    """A fresh invite to the demo project for `role`, as the /start argument its link carries (what
    `fieldcheck admin invite` prints)."""
    async with box.sessions() as session, session.begin():
        project = (await projects.list_projects(session))[0]
        invite = await invites.create_invite(session, project.id, role)
    return f"inv_{invite.code}"


async def scene_reviewer_joins(box: Sandbox) -> None:
    """A reviewer joins with a link made by `fieldcheck admin invite`, then switches the bot to English."""
    reviewer = box.person("reviewer", 4001, "Rita (reviewer)")
    await reviewer.send_command("start", await _invite(box, Role.REVIEWER))
    await reviewer.expect("оценщик")
    await reviewer.send_command("lang")
    choice = await reviewer.expect("язык")
    await reviewer.press(choice, "English")
    await box.tg.wait_until(lambda: "English" in message_text(reviewer.last()))
    await reviewer.send_command("start")
    await reviewer.expect("reviewer")


SANDBOX_PHONE = "+7 916 555-01-23"  # a customer who agreed to leave a number (never in the logs: test_cli)


async def _fill_form(promoter: UserClient, product: str, quantity: str, phone: str | None = None) -> None:
    """The default form, answered in Russian; patient, since the voice worker may be busy beside the bot."""
    await promoter.send_text("➕ Новый контакт")
    await promoter.wait_last("1/5", PATIENCE)
    await promoter.press(promoter.last(), product)
    await promoter.wait_last("2/5", PATIENCE)
    await promoter.press(promoter.last(), "25–45")
    await promoter.wait_last("3/5", PATIENCE)
    await promoter.press(promoter.last(), "Да")
    await promoter.wait_last("4/5", PATIENCE)
    await promoter.send_text(quantity)
    await promoter.wait_last("5/5", PATIENCE)
    if phone:
        await promoter.press(promoter.last(), "Да, покупатель согласен")
        await promoter.wait_last("номер телефона", PATIENCE)
        await promoter.send_text(phone)
    else:
        await promoter.press(promoter.last(), "Нет")
    await promoter.wait_last("запись диалога", PATIENCE)


async def scene_promoter_contacts(box: Sandbox) -> None:
    """The promoter records a voice sample, then reports two contacts; a silent recording is refused."""
    voices = box.out_dir / "voice"
    await asyncio.to_thread(voices.mkdir, exist_ok=True)
    enrol = await asyncio.to_thread(
        demo_audio.speech, voices / "pavel-enrolment.ogg", repeats=2, voice="en+m3"
    )
    # Genuine contacts: the promoter and a customer in turns, recorded by one phone in a noisy shop.
    # Customers in espeak voices unlike the promoter's (CAM++ scores en+f2 0.45 against en+m3, Alicia 0.16).
    first = await asyncio.to_thread(demo_audio.dialogue, voices / "contact-1.ogg", customer_voice="en+Alicia")
    second = await asyncio.to_thread(
        demo_audio.dialogue, voices / "contact-2.ogg", customer_voice="en+grandma"
    )
    silent = await asyncio.to_thread(demo_audio.silence, voices / "silent.ogg", 15)

    promoter = box.people["promoter"]
    await promoter.expect("Ещё один шаг")  # asked for a voice sample when they joined
    await promoter.send_voice(enrol)
    await promoter.expect("образец голоса сохранён")
    await _fill_form(promoter, "Кофе", "2")
    await promoter.send_voice(silent)
    await promoter.expect("тишина")
    await promoter.send_voice(first)
    await promoter.expect("принят")
    await promoter.expect("Для клиента", PATIENCE)  # the survey code follows the receipt (outbox, ~1 s)
    await _fill_form(promoter, "Чай", "1", phone=SANDBOX_PHONE)
    await promoter.send_voice(second)
    await promoter.expect("принят")
    await promoter.expect("Для клиента", PATIENCE)
    await promoter.send_text("📊 Мои результаты")
    await promoter.expect("Контактов сегодня: 2")


async def _rate(
    tg: StandIn, reviewer: UserClient, card: dict[str, Any], labels: list[str], verdict: str
) -> None:
    for label in labels:
        before = repr(reviewer.last_state(card))

        def changed(before: str = before) -> bool:
            return repr(reviewer.last_state(card)) != before

        await reviewer.press(reviewer.last_state(card), label)
        await tg.wait_until(changed)
    await reviewer.press(reviewer.last_state(card), verdict)


async def scene_review(box: Sandbox) -> None:
    """Two reviewers start shifts; Oleg lets his card expire and it passes to Rita; both contacts are rated and
    the promoter gets feedback. The clock is moved by passing `now` to the jobs."""
    rita = box.people["reviewer"]
    oleg = box.person("reviewer2", 4002, "Oleg (reviewer)")
    await oleg.send_command("start", await _invite(box, Role.REVIEWER))
    await oleg.expect("оценщик")
    # One open card each, set before anyone is on shift: the scheduler's own dispatch may run as soon as the
    # voice worker is done, even between the two reviewers going on shift (CI saw both cards go to Rita).
    async with box.sessions() as session, session.begin():
        await session.execute(update(Project).values(max_open_cards=1))
    for reviewer in (rita, oleg):
        await reviewer.send_command("on")
        await reviewer.expect("смене" if reviewer is oleg else "on shift")
    await _analysed(box)  # review waits for the voice worker's flags
    now = utcnow()
    await review_jobs.dispatch(box.sessions, box.i18n, now=now)
    rita_card = await rita.skip_to("Contact #1", PATIENCE)  # cards come through the outbox
    oleg_card = await oleg.skip_to("Контакт №2", PATIENCE)
    for card in (rita_card, oleg_card):  # genuine dialogues: the voice checks raise nothing
        assert "⚠️" not in message_text(card) and "🎧" not in message_text(card), message_text(card)
    box.notes.append("genuine dialogues #1 and #2 (two voices on one phone): no voice flag")
    await _rate(
        box.tg,
        rita,
        rita_card,
        [
            "Greeting",
            "Product presentation",
            "Product presentation",
            "Product presentation",
            "Product presentation",
            "Asked for the sale",
            "Politeness",
            "Real customer",
        ],
        "Approve",
    )
    await box.tg.wait_until(lambda: "Submitted" in message_text(rita.last_state(rita_card)))

    await review_jobs.expire(box.sessions, box.i18n, now=now + dt.timedelta(minutes=16))
    await box.tg.wait_until(lambda: "Время вышло" in message_text(oleg.last_state(oleg_card)))
    await review_jobs.dispatch(box.sessions, box.i18n, now=now + dt.timedelta(minutes=17))
    second = await rita.skip_to("Contact #2", PATIENCE)
    await _rate(
        box.tg,
        rita,
        second,
        [
            "Greeting",
            "Product presentation",
            "Asked for the sale",
            "Asked for the sale",
            "Politeness",
            "Real customer",
        ],
        "Reject",
    )
    await rita.skip_to("needs a comment")
    await rita.send_text("No offer to buy; presentation too short")
    await box.tg.wait_until(lambda: "Submitted" in message_text(rita.last_state(second)))
    async with box.sessions() as session, session.begin():  # skip the 60-second undo window
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.dedupe_key.like(outbox_keys.FEEDBACK_ANY))
            .values(not_before=utcnow())
        )
    promoter = box.people["promoter"]
    await box.tg.wait_until(
        lambda: sum("проверен" in message_text(m) for m in promoter.bot_messages()) == 2, 20
    )


async def _analysed(box: Sandbox, polls: int = 1200) -> None:
    """Until the voice worker has finished every recording it has been given (2 minutes at most)."""
    for _ in range(polls):
        async with box.sessions() as session:
            left = await session.scalar(
                select(func.count())
                .select_from(AnalysisTask)
                .where(AnalysisTask.state.in_([AnalysisState.PENDING, AnalysisState.RUNNING]))
            )
        if not left:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("voice analysis did not finish")


async def scene_voice_flags(box: Sandbox) -> None:
    """The promoter records himself as the "customer": the voice worker flags it, and the reviewer's card
    says so before anyone listens."""
    promoter, rita = box.people["promoter"], box.people["reviewer"]
    himself = await asyncio.to_thread(
        demo_audio.speech,
        box.out_dir / "voice" / "contact-3-himself.ogg",
        voice="en+m3",
        text="Hello, yes, I would like two packs of coffee please. Thank you, have a nice day. ",
        repeats=2,
    )
    await _fill_form(promoter, "Кофе", "2")
    await promoter.send_voice(himself)
    await promoter.skip_to("Контакт №3 принят")  # after the feedback on contacts 1 and 2, whenever it came
    await _analysed(box)
    await review_jobs.dispatch(box.sessions, box.i18n)
    card = await rita.skip_to("Contact #3", PATIENCE)
    # Either self-recording flag: heard as one voice ("no customer voice"), or as two parts that both score
    # like the promoter's enrolment ("the customer is the promoter's own voice": CAM++ on this 10 s note).
    said = message_text(card)
    assert "no customer voice" in said or "the customer is the promoter's own voice" in said, said
    box.notes.append("voice worker flagged contact #3: the promoter's own voice, no other customer")


# What a customer waits for and presses in the survey, by language: the consent question and its button,
# the score question, the thanks after the follow-up.
_SURVEY_WORDS = {
    "ru": ("согласны", "Согласен", "порекомендуете", "Спасибо за ответ"),
    "en": ("Do you agree?", "Agree", "recommend", "Thank you for your answer"),
}


async def _answer_survey(
    customer: UserClient, language: str, link: str, *, score: str, asked: str, answer: str
) -> None:
    """A customer opens the survey from a receipt's QR link, agrees, scores, is `asked` the follow-up
    question the score brings, and answers it."""
    consent, agree, score_question, thanks = _SURVEY_WORDS[language]
    await customer.send_command("start", link)
    await customer.press(await customer.expect(consent, PATIENCE), agree)
    await customer.press(await customer.wait_last(score_question, PATIENCE), score)
    await customer.expect(asked, PATIENCE)
    await customer.send_text(answer)
    await customer.expect(thanks, PATIENCE)


async def scene_customers(box: Sandbox) -> None:
    """Customers scan the QR codes from the promoter's receipts: one delighted, one unhappy. The unhappy
    one reaches the manager at once; she takes it, resolves it with a note, and the customer is thanked."""
    manager = box.person("manager", 5001, "Maria (manager)")
    await manager.send_command("start", await _invite(box, Role.MANAGER))
    await manager.expect("менеджер", PATIENCE)
    links = [
        m.group(1)
        for message in box.people["promoter"].bot_messages()
        if (m := re.search(r"start=(s_[\w-]+)", message_text(message)))
    ]
    assert len(links) >= 2, links
    happy = box.person("customer1", 6001, "Olga (customer)")
    praise = "Дали попробовать три вкуса, всё объяснили"
    await _answer_survey(happy, "ru", links[0], score="10", asked="понравилось", answer=praise)
    unhappy = box.person("customer2", 6002, "Igor (customer)", language="en")
    complaint = "Pushy, and the coffee was cold"
    await _answer_survey(unhappy, "en", links[1], score="3", asked="What could we improve?", answer=complaint)

    alert = await manager.skip_to("Недовольный клиент", PATIENCE)
    await manager.press(alert, "Беру")
    await box.tg.wait_until(
        lambda: any("Взял(а)" in message_text(m) for m in manager.bot_messages()), PATIENCE
    )
    await manager.press(alert, "Решено")
    await manager.expect("одной строкой", PATIENCE)
    await manager.send_text("Позвонила, извинилась; промоутеру инструктаж по подаче")
    await manager.expect("решено", PATIENCE)
    await unhappy.expect("acted on it", PATIENCE)
    box.notes.append("customers answered the QR surveys: NPS 10 and 3; the detractor reached the manager")
    box.notes.append(
        "the scripted customers answer seconds after the contact, so their contacts carry the factual"
        " 'survey answered too fast' flag; a real customer needs longer to scan the code"
    )


SPEECH = {  # the sandbox project's speech analysis and routing (issue #25), turned on in scene_speech
    "enabled": True,
    "products": ["Кофейня"],  # what the promoter in sandbox.demo_audio.russian_dialogue names
    "routing": True,
    "audit_share": 0.0,
    "new_promoter_contacts": 0,  # Pavel's first three contacts were reviewed by people already
}


ENROL_RU = (
    "Добрый день! Меня зовут, как написано на бейдже, и сегодня я представляю нашу новинку. Расскажу, чем"
    " она особенная, какой у неё вкус и почему её каждый день выбирают покупатели. Хотите попробовать?"
)


async def scene_speech(box: Sandbox) -> None:
    """Speech analysis and routing on for the project: the voice worker transcribes two Russian dialogues
    (festvox-ru's promoter, espeak-ng's customer; Whisper base). The first, clear, is decided by the machine
    and the promoter told at once; the second falls in the audit share (raised to every contact for it) and
    goes to Rita, whose card shows the transcript and starts with the marks the checks say: she confirms.
    That second customer takes six seconds to taste, and the project cuts long pauses for reviewers: Rita's
    recording comes without the wait, its caption saying how much shorter it is.
    Pavel first records his voice sample again in the dialogues' promoter voice, so that the diarisation
    tells him from the customer."""
    promoter, rita, oleg = box.people["promoter"], box.people["reviewer"], box.people["reviewer2"]
    voices = box.out_dir / "voice"
    sample = await asyncio.to_thread(demo_audio.russian_speech, voices / "pavel-enrolment-ru.ogg", ENROL_RU)
    clear = await asyncio.to_thread(demo_audio.russian_dialogue, voices / "contact-ru-1.ogg", snr_db=None)
    audited = await asyncio.to_thread(  # another customer: the same two voices again would be a resent note
        demo_audio.russian_dialogue,
        voices / "contact-ru-2.ogg",
        snr_db=None,
        customer_voice="ru+grandma",
        wait_seconds=6.0,
    )
    async with box.sessions() as session, session.begin():
        project = (await projects.list_projects(session))[0]
        await projects.configure(session, project.id, {"max_open_cards": 2}, speech=SPEECH)
    await oleg.send_command("off")  # the audited card goes to Rita
    await oleg.skip_to("не на смене", PATIENCE)
    await promoter.send_command("enrol")
    await promoter.skip_to("запишите голосовое сообщение", PATIENCE)
    await promoter.send_voice(sample)
    await promoter.skip_to("образец голоса сохранён", PATIENCE)

    await _fill_form(promoter, "Кофе", "1")
    await promoter.send_voice(clear)
    receipt = await promoter.skip_to("принят. Статус", PATIENCE)
    decided = re.search(r"№(\d+)", message_text(receipt))
    assert decided is not None
    await _analysed(box, polls=1800)  # Whisper's first note in this process loads it
    await review_jobs.dispatch(box.sessions, box.i18n)  # routing runs first in each dispatch round
    told = await promoter.skip_to(f"Контакт №{decided.group(1)} проверен автоматически", PATIENCE)
    box.notes.append(
        f"speech routing decided contact #{decided.group(1)} itself: {message_text(told).splitlines()[0]}"
    )

    async with box.sessions() as session, session.begin():
        await projects.configure(session, project.id, {}, speech={"audit_share": 1.0, "cut_pauses": True})
    await _fill_form(promoter, "Кофе", "2")
    await promoter.send_voice(audited)
    receipt = await promoter.skip_to("принят. Статус", PATIENCE)
    sent = re.search(r"№(\d+)", message_text(receipt))
    assert sent is not None
    await _analysed(box, polls=1800)
    await review_jobs.dispatch(box.sessions, box.i18n)
    shortened = await rita.skip_to("long pauses cut", PATIENCE)  # the recording, sent before the card
    box.notes.append(f"Rita's recording came without the customer's wait: {message_text(shortened)}")
    card = await rita.skip_to(f"Contact #{sent.group(1)} ·", PATIENCE)
    said = message_text(card)
    assert "Transcript" in said and "Marks pre-filled from the speech checks" in said, said
    async with box.sessions() as session:
        speech = await session.scalar(
            select(AnalysisTask.speech)
            .join(Audio, Audio.id == AnalysisTask.audio_id)
            .where(Audio.contact_id == int(sent.group(1)))
        )
    reasons = ", ".join(((speech or {}).get("routing") or {}).get("reasons") or [])
    box.notes.append(
        f"contact #{sent.group(1)} went to a person (routing's reasons: {reasons}): Rita's card shows the"
        " transcript and the marks the speech checks pre-filled"
    )
    await rita.press(card, "Approve")
    await box.tg.wait_until(lambda: "Submitted" in message_text(rita.last_state(card)), PATIENCE)
    async with box.sessions() as session, session.begin():
        await projects.configure(session, project.id, {}, speech={"audit_share": 0.1, "cut_pauses": False})


async def scene_digest(box: Sandbox) -> None:
    """The manager's daily digest with its chart, as the scheduler sends it the next morning."""
    async with box.sessions() as session:
        project = (await projects.list_projects(session))[0]
    local = utcnow().astimezone(ZoneInfo(project.timezone))
    next_morning = dt.datetime.combine(local.date() + dt.timedelta(days=1), project.digest_time, local.tzinfo)
    await digest_jobs.send_digests(box.db, box.i18n, create_audio_store(box.settings), next_morning)
    manager = box.people["manager"]
    # The digest about today, by its date: run after the digest time, the scheduler has also sent a late
    # one about yesterday.
    digest = await manager.skip_to(f"сводка за {local.date():%d.%m.%Y}", PATIENCE)
    box.notes.append("the manager got the daily digest with its 14-day chart")
    audit = next((line for line in message_text(digest).splitlines() if "Аудит" in line), None)
    assert audit is not None, message_text(digest)
    box.notes.append(f"the digest compares the audited contact with the machine: {audit}")
    await manager.press(digest, "👥 Промоутеры")
    await manager.skip_to("отчёт за", PATIENCE)
    box.notes.append("under the digest, the manager opened the day's promoters and stores")


SCENES: list[Scene] = [
    scene_onboarding,
    scene_reviewer_joins,
    scene_promoter_contacts,
    scene_review,
    scene_voice_flags,
    scene_customers,
    scene_speech,
    scene_digest,
]


@dataclass
class ConsoleShown:
    address: str
    link: str | None = None
    screenshot: Path | None = None


async def _start_console(settings: Settings, db: Database) -> tuple[web.AppRunner, str]:
    """The web console beside the bot, on a free local port, over the sandbox's database (the bot's own
    Database) and recordings."""
    runner = web.AppRunner(
        create_console_app(settings, db=db, store=LocalAudioStore(settings.storage_root)),
        access_log=None,
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}{PREFIX}/"


async def _manager_link(box: Sandbox, address: str) -> str | None:
    """A fresh one-time sign-in link for the sandbox's manager (as `/console` gives one in the chat)."""
    async with box.sessions() as session, session.begin():
        manager = await session.scalar(select(User).where(User.telegram_id == MANAGER_ID))
        if manager is None:
            return None
        token = await console_auth.create_link(session, manager, CONSOLE_LINK_TTL)
    return f"{address}auth/link/{token}"


async def screenshot_dashboard(link: str, address: str, path: Path) -> bool:
    """Signs in with `link` in Debian's chromium (Playwright), opens the dashboard and saves it as `path`.
    False, logged, where chromium or Playwright is missing or the browser fails: the sandbox carries on."""
    if not await asyncio.to_thread(CHROMIUM.exists):
        log.info("sandbox_console_screenshot_skipped", reason="no /usr/bin/chromium")
        return False
    try:
        from playwright.async_api import async_playwright  # noqa: PLC0415  playwright: optional screenshot
    except ImportError:
        log.info("sandbox_console_screenshot_skipped", reason="playwright is not installed")
        return False
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(30_000)
                await page.goto(link)
                await page.click("#link-sign-in")
                await page.wait_for_url("**/console/contacts")
                await page.goto(address + "dashboard")
                await page.locator("svg.chart").first.wait_for()  # the dashboard draws several
                await page.screenshot(path=str(path), full_page=True)
            finally:
                await browser.close()
    except Exception as error:  # a browser that cannot start must not fail the sandbox
        log.warning("sandbox_console_screenshot_failed", error=f"{type(error).__name__}: {error}")
        return False
    return True


async def show_console(box: Sandbox, address: str) -> ConsoleShown:
    """The manager's sign-in link to print, and the dashboard's screenshot (signed in by a second link)."""
    shown = ConsoleShown(address, await _manager_link(box, address))
    browser_link = await _manager_link(box, address)
    if browser_link is not None:
        path = box.out_dir / DASHBOARD_PNG
        if await screenshot_dashboard(browser_link, address, path):
            shown.screenshot = path
            box.notes.append(f"the manager's dashboard in the web console, seen in chromium: {DASHBOARD_PNG}")
    return shown


def fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


async def run_sandbox(out_dir: Path, *, wipe: bool = True) -> SandboxResult:
    """`wipe=False` when the caller emptied the folder itself (to open the log file in it first)."""
    if wipe:
        await asyncio.to_thread(fresh_dir, out_dir)
    async with StandIn(files_dir=out_dir / "telegram") as tg:
        settings = sandbox_settings(out_dir).model_copy(
            update={
                "telegram_api_url": tg.base_url,
                "throttle_rate_per_second": 100,  # scripted people tap faster than anyone real
            }
        )
        async with running_bot(settings) as runtime:
            async with runtime.session_factory() as session, session.begin():
                await projects.create_project(session, "Demo Foods", "Tasting Moscow")
            box = Sandbox(tg, settings, runtime.db, out_dir, runtime.i18n)
            # The voice worker runs in its own process in production; here it shares the loop (analysis
            # itself runs in a thread).
            encoder = await asyncio.to_thread(
                load_encoder,
                settings.voice_backend,
                settings.voice_model_dir,
                settings.voice_precision,
                diarisation=settings.voice_diarisation,
            )
            recognizer = await asyncio.to_thread(
                load_recognizer,
                settings.speech_backend,
                settings.speech_model_path,
                source=settings.speech_source,
                language=None if settings.speech_language == "auto" else settings.speech_language,
                threads=settings.speech_threads,
                beam_size=settings.speech_beam_size,
            )
            stop = asyncio.Event()
            worker = asyncio.create_task(
                run_worker(
                    runtime.session_factory,
                    LocalAudioStore(settings.storage_root),
                    encoder,
                    stop,
                    idle=0.2,
                    recognizer=recognizer,
                )
            )
            console, address = await _start_console(settings, runtime.db)
            log.info("sandbox_console_listening", address=address)
            try:
                for scene in SCENES:
                    await scene(box)
                shown = await show_console(box, address)
            finally:
                stop.set()
                await worker
                await console.cleanup()
        transcript = "\n\n".join(tg.transcript(p.chat_id) for p in box.people.values())
    await asyncio.to_thread((out_dir / "transcript.txt").write_text, transcript + "\n", encoding="utf-8")
    return SandboxResult(transcript, out_dir, box.notes, shown.address, shown.link, shown.screenshot)


def sandbox_settings(out_dir: Path) -> Settings:
    """The sandbox's own settings (no .env: nothing real is reached), also the console's over a finished
    sandbox's database (`fieldcheck sandbox --serve`)."""
    return Settings(
        _env_file=None,
        bot_token=SANDBOX_TOKEN,
        database_url=f"sqlite+aiosqlite:///{out_dir / 'fieldcheck.db'}",
        admin_ids=[ADMIN_ID],
        redis_url=None,
        storage_root=out_dir / "audio",
    )
