"""Manager alerts that ask for action, for every kind (issue #10): each fires once, carries "Open contact",
"I take it", "Resolved" and "Mute" buttons that only the project's own managers may use, is repeated once
when nobody takes it, and a muted kind stops reaching the managers until /alerts turns it back on.
The detractor alerts are in test_customers; the SLA, every-reviewer and repeated-voice alerts also keep
their own tests in test_review, test_card_limits and test_voice."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from jobs import customers
from jobs import review as review_jobs
from jobs.manager_alerts import alert_operations
from models import (
    AlertKind,
    AlertStatus,
    AnalysisTask,
    Assignment,
    AssignmentStatus,
    ContactStatus,
    ManagerAlert,
    Membership,
    Project,
    Role,
    User,
)
from models.base import utcnow
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import buttons, message_text
from tests.helpers import add_contact, fragment, join, label, pattern, seed_project, text

ALL_MARKS = {"greeting": 1, "presentation": 2, "offer": 1, "politeness": 1, "real_customer": 1}


async def _queued(sessions: async_sessionmaker[AsyncSession], project: Project, count: int) -> list[int]:
    """`count` contacts of one promoter, waiting for review."""
    async with sessions() as session, session.begin():
        promoter = User(telegram_id=8200, first_name="Pavel")
        session.add(promoter)
        await session.flush()
        ids = []
        for n in range(count):
            contact, _ = await add_contact(session, project.id, promoter.id)
            contact.status = ContactStatus.QUEUED
            contact.queued_at = utcnow() - dt.timedelta(minutes=10 - n)
            ids.append(contact.id)
        return ids


async def _reject(
    app: Runtime,
    reviewer: UserClient,
    card: dict,
    sessions: async_sessionmaker[AsyncSession],  # type: ignore[type-arg]
) -> None:
    assignment_id = int(
        next(b["callback_data"] for b in buttons(card) if b["text"] == label("verdict-reject")).split(":")[2]
    )
    async with sessions() as session, session.begin():
        await session.execute(
            update(Assignment).where(Assignment.id == assignment_id).values(draft_marks=ALL_MARKS)
        )
    await reviewer.press(card, label("verdict-reject"))
    await reviewer.skip_to(fragment("comment-required"))
    await reviewer.send_text("No offer to buy was made")
    submitted = pattern("card-submitted")
    await reviewer.standin.wait_until(lambda: submitted.search(message_text(reviewer.last_state(card))))
    await app.settled()  # the card is edited before the verdict commits


async def _alerts(sessions: async_sessionmaker[AsyncSession], kind: AlertKind) -> list[ManagerAlert]:
    async with sessions() as session:
        return list(await session.scalars(select(ManagerAlert).where(ManagerAlert.kind == kind)))


async def test_rejections_in_a_row_alert_once_and_only_its_managers_act(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    other = await seed_project(sessions, "Other")
    async with sessions() as session, session.begin():
        await session.execute(
            update(Project)
            .where(Project.id == project.id)
            .values(rejections_before_alert=2, max_open_cards=3)
        )
    maria = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    boris = await join(tg, sessions, project, Role.MANAGER, 3002, "Boris")
    foreign = await join(tg, sessions, other, Role.MANAGER, 3009, "Foreign")
    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    ids = await _queued(sessions, project, 3)
    assert await review_jobs.dispatch(app.session_factory, app.i18n) == 3
    await tg.wait_until(lambda: len([m for m in rita.bot_messages() if buttons(m)]) == 3)
    cards = {int(message_text(m).split("#")[1].split()[0]): m for m in rita.bot_messages() if buttons(m)}

    await _reject(app, rita, cards[ids[0]], sessions)
    await _reject(app, rita, cards[ids[1]], sessions)
    streak = text(
        "alert-rejection-streak",
        promoter="Pavel",
        project=project.name,
        count=2,
        contacts=f"#{ids[0]}, #{ids[1]}",
    )
    alert_msg = await maria.expect(streak)
    assert [b["text"] for b in buttons(alert_msg)] == [
        label("btn-alert-open"),
        *[label("btn-alert-take"), label("btn-alert-resolve"), label("btn-alert-mute")],
    ]
    await boris.expect(streak)
    await _reject(app, rita, cards[ids[2]], sessions)  # the streak goes on: no second alert for it
    await app.settled()
    assert len(await _alerts(sessions, AlertKind.REJECTION_STREAK)) == 1

    for outsider in (foreign, rita):
        for key in ("btn-alert-take", "btn-alert-resolve", "btn-alert-mute"):
            data = next(b["callback_data"] for b in buttons(alert_msg) if b["text"] == label(key))
            query = await outsider.press(alert_msg, data=data)
            assert (await outsider.callback_answer(query))["text"] == label("alert-not-manager")
    await maria.press(alert_msg, label("btn-alert-take"))
    await boris.wait_last(text("alert-taken-by", name="Maria"))
    await maria.press(alert_msg, label("btn-alert-resolve"))
    await maria.expect(fragment("alert-resolve-prompt"))
    await maria.send_text("Talked to Pavel, training on Friday")
    await maria.expect(fragment("alert-resolved-you"))
    [alert] = await _alerts(sessions, AlertKind.REJECTION_STREAK)
    assert (
        alert.status == AlertStatus.RESOLVED
        and alert.resolution_note == "Talked to Pavel, training on Friday"
    )

    # Muting the kind from an alert, then turning it back on from /alerts.
    await maria.press(alert_msg, label("btn-alert-mute"))
    # The kind's name, in the answer and on the /alerts buttons.
    said, muted, unmuted = (
        label(key, kind=label("alert-kind-rejections")) for key in ("alert-muted", "alerts-off", "alerts-on")
    )
    assert (await maria.callback_answer(maria.last_query))["text"] == said
    await app.settled()
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None and stored.muted_alerts == ["rejection_streak"]
    await maria.send_command("alerts")
    menu = await maria.expect(text("alerts-menu", project=project.name))
    assert muted in [b["text"] for b in buttons(menu)]
    forged = await foreign.press(menu, muted)
    assert (await foreign.callback_answer(forged))["text"] == label("alert-not-manager")
    await maria.press(menu, muted)
    await tg.wait_until(lambda: unmuted in [b["text"] for b in buttons(maria.last_state(menu))])
    await app.settled()
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None and stored.muted_alerts == []


async def test_analysis_backlog_and_idle_reviewer_alert_once_repeat_once_and_can_be_muted(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(
        sessions, backlog_alert_size=2, analysis_wait_minutes=10, idle_alert_minutes=60
    )
    maria = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita", on_shift=True)
    now = utcnow()
    async with sessions() as session, session.begin():
        promoter = User(telegram_id=8201, first_name="Pavel")
        session.add(promoter)
        await session.flush()
        reviewer = (await session.scalars(select(User).where(User.telegram_id == rita.id))).one()
        for n in range(3):
            contact, audio = await add_contact(session, project.id, promoter.id)
            if n < 2:  # two analyses waiting for half an hour
                session.add(AnalysisTask(audio_id=audio.id, created_at=now - dt.timedelta(minutes=30)))
            else:  # a card Rita has held for two hours, on shift, rating nothing
                contact.status = ContactStatus.IN_REVIEW
                session.add(
                    Assignment(
                        contact_id=contact.id,
                        reviewer_id=reviewer.id,
                        status=AssignmentStatus.OPEN,
                        created_at=now - dt.timedelta(hours=2),
                    )
                )

    assert await alert_operations(sessions, app.i18n, now) == 2
    assert await alert_operations(sessions, app.i18n, now + dt.timedelta(minutes=5)) == 0  # once
    backlog = await maria.expect(text("alert-backlog", project=project.name, count=2, minutes=10))
    assert [b["text"] for b in buttons(backlog)] == [
        label("btn-alert-take"),
        label("btn-alert-resolve"),
        label("btn-alert-mute"),
    ]
    idle = await maria.expect(
        text("alert-reviewer-idle", reviewer="Rita", project=project.name, open=1, minutes=60)
    )
    assert buttons(idle)

    # Nobody takes them: each is repeated once, an hour on.
    later = now + dt.timedelta(hours=1, minutes=1)
    assert await customers.repeat_untaken_alerts(sessions, app.i18n, later) == 2
    assert await customers.repeat_untaken_alerts(sessions, app.i18n, later + dt.timedelta(hours=2)) == 0
    await maria.expect(text("alert-repeat"))

    # Muted: the next day's idle reviewer does not reach the managers; the backlog still does.
    mute = await maria.press(idle, label("btn-alert-mute"))
    idle_kind = label("alert-kind-idle")
    assert (await maria.callback_answer(mute))["text"] == label("alert-muted", kind=idle_kind)
    await app.settled()
    tomorrow = now + dt.timedelta(days=1)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Membership).where(Membership.project_id == project.id).values(on_shift=True)
        )
    assert await alert_operations(sessions, app.i18n, tomorrow) == 1
    async with sessions() as session:
        kinds = dict(
            (await session.execute(select(ManagerAlert.kind, func.count()).group_by(ManagerAlert.kind))).all()
        )
    assert kinds == {AlertKind.ANALYSIS_BACKLOG: 2, AlertKind.REVIEWER_IDLE: 1}


async def test_a_rejection_streak_is_named_by_its_first_contact(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Two reviews committing at once may each see one rejection short of the streak; the next rejection
    still finds it (at least N in a row), and names it by its first contact, so it alerts once."""
    from models import Contact, Verdict
    from services import alerts

    project = await seed_project(sessions)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Project).where(Project.id == project.id).values(rejections_before_alert=2)
        )
        promoter = User(telegram_id=8300, first_name="Pavel")
        session.add(promoter)
        await session.flush()
        ids = []
        start = utcnow() - dt.timedelta(hours=1)
        for n, verdict in enumerate(
            [Verdict.REJECT, Verdict.APPROVE, Verdict.REJECT, Verdict.FRAUD, Verdict.REJECT]
        ):
            contact, _ = await add_contact(session, project.id, promoter.id)
            contact.final_verdict, contact.reviewed_at = verdict, start + dt.timedelta(minutes=n)
            ids.append(contact.id)
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None
        streak = await alerts.rejection_streak(session, stored, promoter.id)
        assert streak == [ids[4], ids[3], ids[2]]  # newest first; the approval before it ends it
        contact = await session.get(Contact, ids[4])
        assert contact is not None
        contact.final_verdict = Verdict.APPROVE  # the latest approved: no streak now
        await session.flush()
        assert await alerts.rejection_streak(session, stored, promoter.id) == []
