"""Customers over real HTTP: the QR on the receipt, both survey scales with follow-up, refusals (duplicate,
expired, foreign, staff, recently surveyed, declined), the detractor's alert and its closed loop, NPS
arithmetic, and the survey cross-check flags."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import zxingcpp
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from jobs import customers
from models import (
    AlertStatus,
    ClientSurvey,
    Contact,
    FlagKind,
    ManagerAlert,
    NpsAnswer,
    NpsCategory,
    NpsScale,
    NpsSurvey,
    Project,
    Role,
    SurveyStatus,
    User,
    VoiceFlag,
)
from models.base import utcnow
from models.payloads import SurveyFastAnswer, SurveyFreshAccounts, SurveySameRespondent
from services import surveys
from services.client_surveys import add_months
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import buttons, message_text
from tests.conftest import TOKEN
from tests.helpers import (
    add_contact,
    add_users,
    fill_default_form,
    fragment,
    join,
    join_as_promoter,
    label,
    pattern,
    seed_project,
    text,
)


async def report_contact(
    tg: StandIn, promoter: UserClient, audio_dir: Path, recording: str = "dialogue.ogg"
) -> tuple[str, dict[str, object]]:
    """A contact through the real form; returns the survey link decoded from the QR image, and the photo.
    Each contact needs its own recording: the same file again within minutes is a resend, not a contact."""
    await fill_default_form(tg, promoter)
    await promoter.send_voice(audio_dir / recording)
    await promoter.expect(fragment("intake-receipt"))
    photo = await promoter.expect(fragment("survey-qr-caption"))
    stored = tg.world.files[photo["photo"][0]["file_id"]]
    decoded = zxingcpp.read_barcodes(Image.open(stored.path))
    assert len(decoded) == 1 and decoded[0].format == zxingcpp.BarcodeFormat.QRCode
    link = decoded[0].text
    assert link in message_text(photo)  # the caption carries the same link for those who cannot scan
    return link, photo


async def promoter_and_manager(
    tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> tuple[Project, UserClient, UserClient]:
    """The project most survey tests start from: Pavel reports its contacts and Maria manages it (the one
    whom a detractor's alert reaches)."""
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    return project, promoter, await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")


def start_arg(link: str) -> str:
    assert link.startswith("https://t.me/") and "?start=s_" in link
    return link.split("?start=", 1)[1]


async def answer_survey(tg: StandIn, project: Project, link: str, score: str) -> UserClient:
    """Olga, who reads English, opens the survey `link` at once, agrees, and presses `score` on the 0-10 scale."""
    customer = tg.user(5001, "Olga", token=TOKEN, language_code="en")
    await customer.send_command("start", start_arg(link))
    await customer.press(
        await customer.expect(text("survey-consent", project=project.name)), label("btn-survey-agree")
    )
    await customer.press(await customer.wait_last(text("survey-question-10", project=project.name)), score)
    return customer


async def survey_rows(
    sessions: async_sessionmaker[AsyncSession], app: Runtime | None = None
) -> list[tuple[NpsSurvey, NpsAnswer | None]]:
    """With `app`, after every update so far is committed (a reply goes out before its handler's commit)."""
    if app is not None:
        await app.settled()
    async with sessions() as session:
        rows = await session.execute(
            select(NpsSurvey, NpsAnswer)
            .outerjoin(NpsAnswer, NpsAnswer.survey_id == NpsSurvey.id)
            .order_by(NpsSurvey.id)
        )
        return [(s, a) for s, a in rows.all()]


async def test_zero_to_ten_detractor_reaches_managers_and_the_loop_closes(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project, promoter, manager = await promoter_and_manager(tg, sessions)
    other_manager = await join(tg, sessions, project, Role.MANAGER, 3002, "Boris")
    link, _photo = await report_contact(tg, promoter, audio_dir)

    customer = tg.user(5001, "Olga", token=TOKEN, language_code="ru")
    await customer.send_command("start", start_arg(link))
    consent = await customer.expect(text("survey-consent", "ru", project=project.name))  # their own language
    await customer.press(consent, label("btn-survey-agree", "ru"))
    question = await customer.wait_last(text("survey-question-10", "ru", project=project.name))
    assert [b["text"] for b in buttons(question)] == [str(n) for n in range(11)]
    await customer.press(question, "3")
    await customer.expect(text("survey-follow-up-detractor", "ru"))
    await customer.send_text("Долго <b>ждал</b>, консультант грубил")
    await customer.expect(text("survey-thanks", "ru"))

    [(survey, answer)] = await survey_rows(sessions, app)
    assert survey.status == SurveyStatus.ANSWERED and survey.customer_telegram_id == customer.id
    assert answer is not None and (answer.score, answer.category) == (3, NpsCategory.DETRACTOR)
    assert answer.follow_up == "Долго <b>ждал</b>, консультант грубил"

    alert_text = text(
        "alert-detractor", project=project.name, id=survey.contact_id, promoter="Pavel", score="3/10"
    )
    alert_msg = await manager.expect(alert_text)
    # The customer's words stay inert text: escaped in the HTML the bot sent, so shown as typed, "<b>" and all.
    said = text("alert-verbatim", text=html.escape("Долго <b>ждал</b>, консультант грубил"))
    assert "«Долго <b>ждал</b>, консультант грубил»" in said and said in message_text(alert_msg)
    await other_manager.expect(alert_text)

    # Open contact: the recording and the form, to the one who pressed.
    await manager.press(alert_msg, label("btn-alert-open"))
    await manager.skip_to(text("card-title", id=survey.contact_id, project=project.name))

    await manager.press(alert_msg, label("btn-alert-take"))
    await other_manager.wait_last(text("alert-taken-by", name="Maria"))
    taken = other_manager.last()
    assert label("btn-alert-take") not in [b["text"] for b in buttons(taken)]
    query = await other_manager.press(taken, label("btn-alert-resolve"))  # not theirs to resolve
    assert (await other_manager.callback_answer(query))["text"] == label("alert-taken-other")

    await manager.press(alert_msg, label("btn-alert-resolve"))
    await manager.expect(fragment("alert-resolve-prompt"))
    await manager.send_text("Позвонила клиенту, извинилась, консультанту выговор")
    await manager.expect(fragment("alert-resolved-you"))
    await other_manager.wait_last(
        text("alert-resolved-by", name="Maria", note="Позвонила клиенту, извинилась, консультанту выговор")
    )
    await customer.expect(text("survey-thanks-resolved", "ru"))  # thanked once the case is resolved

    async with sessions() as session:
        alert = (await session.scalars(select(ManagerAlert))).one()
        maria = (await session.scalars(select(User).where(User.telegram_id == 3001))).one()
        assert alert.status == AlertStatus.RESOLVED and alert.resolved_by_id == maria.id
        assert alert.resolution_note == "Позвонила клиенту, извинилась, консультанту выговор"

    # The same link again, from the same customer and from someone else: nothing changes.
    await customer.send_command("start", start_arg(link))
    await customer.expect(text("survey-answered", "ru"))
    stranger = tg.user(5002, "Ivan", token=TOKEN, language_code="en")
    await stranger.send_command("start", start_arg(link))
    await stranger.expect(text("survey-taken"))
    [(survey_after, answer_after)] = await survey_rows(sessions)
    assert (
        answer_after is not None
        and answer_after.id == answer.id
        and survey_after.customer_telegram_id == customer.id
    )


async def test_three_point_scale_promoter_answer_with_skip_and_no_alert(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project = await seed_project(sessions, nps_scale=NpsScale.THREE_POINT)
    promoter = await join_as_promoter(tg, sessions, project)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    link, _ = await report_contact(tg, promoter, audio_dir)
    consent = text("survey-consent", project=project.name)

    customer = tg.user(5001, "Kate", token=TOKEN, language_code="en")
    await customer.send_command("start", start_arg(link))
    await customer.press(await customer.expect(consent), label("btn-survey-agree"))
    question = await customer.wait_last(text("survey-question-3", project=project.name))
    scale = [label("nps-bad"), label("nps-good"), label("nps-excellent")]
    assert [b["text"] for b in buttons(question)] == scale
    late_bad = next(b["callback_data"] for b in buttons(question) if b["text"] == label("nps-bad"))
    await customer.press(question, label("nps-excellent"))
    follow_up = await customer.expect(text("survey-follow-up-promoter"))
    await customer.press(follow_up, label("btn-survey-skip"))
    await customer.wait_last(text("survey-thanks"))
    # A late second press on the scale changes nothing.
    query = await customer.press(question, data=late_bad)
    assert (await customer.callback_answer(query))["text"] == label("survey-answered")
    await app.settled()

    [(_survey, answer)] = await survey_rows(sessions)
    assert answer is not None and (answer.score, answer.category, answer.follow_up) == (
        2,
        NpsCategory.PROMOTER,
        None,
    )
    await app.settled()
    unhappy = [fragment("alert-detractor"), fragment("alert-client-detractor")]
    assert not [m for m in manager.bot_messages() if any(f in message_text(m) for f in unhappy)]
    async with sessions() as session:
        assert (await session.scalars(select(ManagerAlert))).first() is None


async def test_declined_expired_staff_forged_and_recently_surveyed(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    first, _ = await report_contact(tg, promoter, audio_dir)
    second, _ = await report_contact(tg, promoter, audio_dir, "dialogue2.ogg")
    third, _ = await report_contact(tg, promoter, audio_dir, "enrol.ogg")
    consent = text("survey-consent", project=project.name)
    question = text("survey-question-10", project=project.name)

    # The promoter scanning their own code is refused.
    await promoter.send_command("start", start_arg(first))
    await promoter.expect(text("survey-staff"))

    # Consent declined: nothing recorded, and the link is spent.
    shy = tg.user(5003, "Shy", token=TOKEN, language_code="en")
    await shy.send_command("start", start_arg(first))
    await shy.press(await shy.expect(consent), label("btn-survey-decline"))
    await shy.wait_last(text("survey-declined"))

    # A forged token, and a forged button for someone else's survey.
    await shy.send_command("start", "s_AAAAAAAAAAAAAAAAAAAAAA")
    await shy.expect(text("survey-unknown"))
    customer = tg.user(5001, "Olga", token=TOKEN, language_code="en")
    await customer.send_command("start", start_arg(second))
    agree = await customer.expect(consent)
    forged = await shy.press(agree, data=buttons(agree)[0]["callback_data"])
    assert (await shy.callback_answer(forged))["text"] == label("survey-unknown")
    await customer.press(agree, label("btn-survey-agree"))
    await customer.press(await customer.wait_last(question), "10")
    await customer.expect(text("survey-follow-up-promoter"))
    await customer.send_text("Всё понравилось")
    await customer.expect(text("survey-thanks"))

    # The same account for the promoter's next contact, inside the cooldown: refused, and both contacts
    # are flagged for the reviewer (one account answering for one promoter's customers).
    await customer.send_command("start", start_arg(third))
    await customer.expect(text("survey-recently"))
    await app.settled()
    async with sessions() as session:
        flags = list(
            await session.scalars(select(VoiceFlag).where(VoiceFlag.kind == FlagKind.SURVEY_SAME_RESPONDENT))
        )
        contact_ids = [c.id for c in await session.scalars(select(Contact).order_by(Contact.id))]
    assert sorted(f.contact_id for f in flags) == contact_ids[1:]
    assert all(isinstance(f.details, SurveySameRespondent) and f.details.tried for f in flags)

    # An expired link.
    async with sessions() as session, session.begin():
        await session.execute(update(NpsSurvey).values(expires_at=utcnow() - dt.timedelta(minutes=1)))
    late = tg.user(5004, "Late", token=TOKEN, language_code="en")
    await late.send_command("start", start_arg(third))
    await late.expect(text("survey-expired"))
    await app.settled()
    statuses = [s.status for s, _ in await survey_rows(sessions)]
    assert statuses == [SurveyStatus.DECLINED, SurveyStatus.ANSWERED, SurveyStatus.EXPIRED]


async def test_detractor_without_follow_up_still_alerts_and_untaken_alert_repeats_once(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project, promoter, manager = await promoter_and_manager(tg, sessions)
    link, _ = await report_contact(tg, promoter, audio_dir)
    customer = await answer_survey(tg, project, link, "0")
    await customer.expect(text("survey-follow-up-detractor"))  # and the customer walks away

    now = utcnow()
    assert await customers.alert_overdue_detractors(sessions, app.i18n, now) == 0  # still waiting
    later = now + surveys.FOLLOW_UP_WAIT + dt.timedelta(seconds=1)
    assert await customers.alert_overdue_detractors(sessions, app.i18n, later) == 1
    assert await customers.alert_overdue_detractors(sessions, app.i18n, later) == 0
    first = await manager.expect(fragment("alert-detractor"))
    assert text("alert-no-verbatim") in message_text(first)

    hour = later + dt.timedelta(hours=1, minutes=1)
    assert await customers.repeat_untaken_alerts(sessions, app.i18n, hour) == 1
    repeat = await manager.expect(text("alert-repeat"))
    assert await customers.repeat_untaken_alerts(sessions, app.i18n, hour + dt.timedelta(hours=3)) == 0
    await manager.press(repeat, label("btn-alert-take"))
    taken_by = text("alert-taken-by", name="Maria")
    await manager.wait_last(taken_by)
    copies = [m for m in manager.bot_messages() if fragment("alert-detractor") in message_text(m)]
    assert len(copies) == 2
    await tg.wait_until(lambda: all(taken_by in message_text(m) for m in copies))  # both copies

    # The follow-up the customer sends too late is refused, not attached to the closed survey.
    await customer.send_text("вообще-то хотел ответить")
    await customer.expect(text("survey-answered"))  # refused politely
    await app.settled()
    async with sessions() as session:
        answer = (await session.scalars(select(NpsAnswer))).one()
        assert answer.follow_up is None


async def test_outsider_cannot_act_on_an_alert(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project = await seed_project(sessions)
    other = await seed_project(sessions, "Other")
    promoter = await join_as_promoter(tg, sessions, project)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    foreign = await join(tg, sessions, other, Role.MANAGER, 3009, "Foreign")
    reviewer = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    link, _ = await report_contact(tg, promoter, audio_dir)
    customer = await answer_survey(tg, project, link, "5")
    await customer.press(await customer.expect(text("survey-follow-up-detractor")), label("btn-survey-skip"))
    alert_msg = await manager.expect(fragment("alert-detractor"))
    for outsider in (foreign, reviewer, promoter):
        for key in ("btn-alert-take", "btn-alert-resolve", "btn-alert-open"):
            data = next(b["callback_data"] for b in buttons(alert_msg) if b["text"] == label(key))
            query = await outsider.press(alert_msg, data=data)
            assert (await outsider.callback_answer(query))["text"] == label("alert-not-manager")
    await app.settled()
    async with sessions() as session:
        alert = (await session.scalars(select(ManagerAlert))).one()
        assert alert.status == AlertStatus.OPEN and alert.taken_by_id is None


async def test_nps_arithmetic_on_a_hand_made_fixture(sessions: async_sessionmaker[AsyncSession]) -> None:
    project = await seed_project(sessions)
    now = utcnow()
    # promoter A: scores 10, 9, 8, 3, 0 and one unanswered survey; promoter B: 7 and 10.
    plan = {"Anna": [10, 9, 8, 3, 0, None], "Boris": [7, 10]}
    async with sessions() as session, session.begin():
        for index, (name, scores) in enumerate(plan.items()):
            person = User(telegram_id=7000 + index, first_name=name)
            session.add(person)
            await session.flush()
            for score in scores:
                contact, _ = await add_contact(session, project.id, person.id)
                contact.form_answers = {"store": f"Store {index + 1}"}
                survey = await surveys.create_survey(session, project, contact, now)
                assert survey is not None
                if score is not None:
                    survey.status = SurveyStatus.ANSWERED
                    session.add(
                        NpsAnswer(
                            survey_id=survey.id,
                            score=score,
                            category=surveys.category_of(survey.scale, score),
                        )
                    )
        await session.flush()
        start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=1)
        [whole] = await surveys.nps_figures(session, project.id, start, end)
        by_promoter = {
            r.key: r for r in await surveys.nps_figures(session, project.id, start, end, by="promoter")
        }
        by_store = {r.key: r for r in await surveys.nps_figures(session, project.id, start, end, by="store")}
    # 7 answers: promoters 10, 9, 10 (3); passives 8, 7 (2); detractors 3, 0 (2): NPS = (3 - 2) / 7.
    assert (whole.surveys, whole.responses, whole.promoters, whole.passives, whole.detractors) == (
        8,
        7,
        3,
        2,
        2,
    )
    assert abs((whole.nps or 0) - 100 / 7) < 1e-9 and whole.response_rate == 7 / 8
    assert by_promoter["Anna"].nps == 0.0 and by_promoter["Anna"].response_rate == 5 / 6
    assert by_promoter["Boris"].nps == 50.0
    assert by_store["Store 2"].responses == 2
    assert surveys.category_of(NpsScale.ZERO_TO_TEN, 6) == NpsCategory.DETRACTOR
    assert surveys.category_of(NpsScale.ZERO_TO_TEN, 7) == NpsCategory.PASSIVE
    assert surveys.category_of(NpsScale.THREE_POINT, 1) == NpsCategory.PASSIVE


async def _answered_survey(
    session: AsyncSession,
    project: Project,
    promoter: User,
    customer_id: int,
    when: dt.datetime,
    *,
    submitted: dt.datetime,
) -> NpsSurvey:
    contact, _ = await add_contact(session, project.id, promoter.id)
    contact.submitted_at = submitted
    survey = await surveys.create_survey(session, project, contact, submitted)
    assert survey is not None
    customer = await session.scalar(select(User).where(User.telegram_id == customer_id))
    if customer is None:
        customer = User(telegram_id=customer_id, first_name="c")
        session.add(customer)
        await session.flush()
    await surveys.open_survey(session, survey.token, customer, when)
    await surveys.answer(session, survey.id, customer, 9, when)
    return survey


async def test_cross_check_flags_fast_answer_and_fresh_accounts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    project = await seed_project(sessions)
    now = utcnow()
    async with sessions() as session, session.begin():
        honest, suspect = await add_users(session, (8001, "Honest"), (8002, "Suspect"))
        # 39 ordinary respondents for the honest promoter, their account ids spread over the years; with
        # the suspect's 6 that makes 45, so the newest 10% by id are 5 accounts.
        for i in range(39):
            await _answered_survey(
                session,
                project,
                honest,
                100_000 + i * 1_000_000,
                now,
                submitted=now - dt.timedelta(minutes=5),
            )
        # The suspect's 6 respondents: 5 brand-new accounts (the highest ids seen), answered within seconds.
        fresh_ids = [9_000_000_000 + i for i in range(5)]
        for i, customer_id in enumerate([*fresh_ids, 200_000]):
            await _answered_survey(
                session,
                project,
                suspect,
                customer_id,
                now,
                submitted=now - dt.timedelta(seconds=3 if i == 0 else 300),
            )
        flags = list(await session.scalars(select(VoiceFlag)))
        suspect_contacts = set(
            await session.scalars(select(Contact.id).where(Contact.promoter_id == suspect.id))
        )
    fast = [f for f in flags if f.kind == FlagKind.SURVEY_FAST_ANSWER]
    fresh = [f for f in flags if f.kind == FlagKind.SURVEY_FRESH_ACCOUNTS]
    assert (
        len(fast) == 1
        and fast[0].contact_id in suspect_contacts
        and fast[0].details == SurveyFastAnswer(seconds=3.0)
    )
    assert len(fresh) == 5 and {f.contact_id for f in fresh} <= suspect_contacts
    assert fresh[-1].details == SurveyFreshAccounts(fresh=5, answers=6, expected=surveys.FRESH_SHARE)
    assert not [f for f in flags if f.kind == FlagKind.SURVEY_SAME_RESPONDENT]


async def test_survey_flag_on_the_reviewer_card(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    from jobs import review

    project = await seed_project(sessions, analysis_wait_minutes=0)
    promoter = await join_as_promoter(tg, sessions, project)
    reviewer = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    link, _ = await report_contact(tg, promoter, audio_dir)
    # A scan needs at least a few seconds; this one took none.
    customer = await answer_survey(tg, project, link, "10")
    await customer.expect(text("survey-follow-up-promoter"))
    await review.dispatch(sessions, app.i18n)
    card = await reviewer.skip_to(fragment("card-title"))
    assert pattern("card-flag-survey-fast").search(message_text(card))


async def test_client_contacts_surveyed_every_n_months_with_one_reminder_and_unsubscribe(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(
        sessions, client_survey_months=3, client_survey_time=dt.time(11, 0), timezone="UTC"
    )
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    happy = await join(tg, sessions, project, Role.CLIENT, 4001, "Client Kate")
    unhappy = await join(tg, sessions, project, Role.CLIENT, 4002, "Client Oleg")
    quitter = await join(tg, sessions, project, Role.CLIENT, 4003, "Client Ivan")
    silent = await join(tg, sessions, project, Role.CLIENT, 4004, "Client Sam")
    joined = utcnow()

    def at(days: int, hour: int = 12) -> dt.datetime:
        return dt.datetime.combine(joined.date() + dt.timedelta(days=days), dt.time(hour), dt.UTC)

    assert await customers.send_client_surveys(sessions, app.i18n, at(30)) == 0  # one month: not yet
    in_three_months = (joined.date().replace(day=1) + dt.timedelta(days=32 * 3)).replace(day=28)
    due = dt.datetime.combine(in_three_months, dt.time(10, 59), dt.UTC)
    assert await customers.send_client_surveys(sessions, app.i18n, due) == 0  # before the survey time
    due = due.replace(hour=11, minute=5)
    assert await customers.send_client_surveys(sessions, app.i18n, due) == 4
    assert await customers.send_client_surveys(sessions, app.i18n, due + dt.timedelta(minutes=5)) == 0

    asked = text("client-survey-10", project=project.name)
    question = await happy.expect(asked)
    await happy.press(question, "9")
    await happy.press(await happy.expect(text("survey-follow-up-promoter")), label("btn-survey-skip"))
    await happy.wait_last(text("survey-thanks"))

    await unhappy.press(await unhappy.expect(asked), "2")
    await unhappy.expect(text("survey-follow-up-detractor"))
    await unhappy.send_text("Reports come late")
    await unhappy.expect(text("survey-thanks"))
    alert = await manager.expect(
        text("alert-client-detractor", project=project.name, client="Client Oleg", score="2/10")
    )
    assert "Reports come late" in message_text(alert)

    await quitter.press(await quitter.expect(asked), label("btn-client-unsubscribe"))
    await quitter.wait_last(text("client-unsubscribed"))
    await app.settled()  # the answers and the unsubscribe are committed before the next run reads them

    # Three days on: one reminder, only to the client who neither answered nor unsubscribed.
    assert await customers.send_client_surveys(sessions, app.i18n, due + dt.timedelta(days=2)) == 0
    assert await customers.send_client_surveys(sessions, app.i18n, due + dt.timedelta(days=4)) == 1
    reminder = text("client-survey-reminder")
    await silent.skip_to(reminder)
    assert await customers.send_client_surveys(sessions, app.i18n, due + dt.timedelta(days=5)) == 0
    for person in (happy, unhappy, quitter):
        assert not [m for m in person.bot_messages() if reminder in message_text(m)]

    # Three months later the subscribed get the next round; the one who unsubscribed does not.
    next_round = dt.datetime.combine(add_months(in_three_months, 3), dt.time(11, 5), dt.UTC)
    assert await customers.send_client_surveys(sessions, app.i18n, next_round) == 3
    async with sessions() as session:
        rounds = list(
            await session.scalars(
                select(ClientSurvey.user_id).where(ClientSurvey.due_on == next_round.date())
            )
        )
        ivan = (await session.scalars(select(User).where(User.telegram_id == 4003))).one()
    assert len(rounds) == 3 and ivan.id not in rounds
