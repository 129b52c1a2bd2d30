"""The review operation over real HTTP: cards, marks, verdicts, feedback, SLA expiry, group claims,
forged presses, the daily re-review, undo, and the outbox under a 429 storm."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.db import Database
from jobs import review as review_jobs
from jobs.outbox import OutboxSender, RateLimiter
from models import (
    Assignment,
    AssignmentKind,
    AssignmentStatus,
    Contact,
    ContactStatus,
    Dispute,
    DisputeStatus,
    Membership,
    OutboxMessage,
    OutboxStatus,
    Project,
    Review,
    Role,
    User,
    Verdict,
)
from models.base import utcnow
from services import intake
from services.review import ReviewerSlot, plan
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import buttons, message_text
from tests.conftest import TOKEN
from tests.helpers import (
    add_review,
    cards_of,
    criterion,
    fragment,
    join,
    label,
    pattern,
    pavel_with_contacts,
    seed_contacts,
    seed_project,
    text,
)

# Every line a card shows for a flag: a card without flags has none of them.
FLAG_LINES = (
    "card-flag",
    "card-flag-likely",
    "card-flag-unsure",
    "card-flag-survey-same",
    "card-flag-survey-fast",
    "card-flag-survey-fresh",
)


async def until_done(job: Any, expected: int, **kwargs: Any) -> None:
    """Run a periodic job until it has done `expected` items, as the scheduler would run it again: on
    PostgreSQL a row locked for a moment (the outbox recording a card's message id) is skipped, not waited on."""
    done = 0
    for _ in range(50):
        done += await job(**kwargs)
        if done >= expected:
            break
        await asyncio.sleep(0.1)
    assert done == expected


def state_of(person: UserClient, message: dict) -> str:  # type: ignore[type-arg]
    """Text and buttons of a card as it stands now (a mark may change only a button's label)."""
    current = person.last_state(message)
    return message_text(current) + repr(current.get("reply_markup"))


async def test_cards_marks_verdicts_and_feedback(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions)
    reviewers = [await join(tg, sessions, project, Role.REVIEWER, 3000 + i, f"Rev{i}") for i in range(3)]
    promoter = await join(tg, sessions, project, Role.PROMOTER, 2000, "Pavel")
    await seed_contacts(sessions, tg, project, 2000, 10, audio_dir / "dialogue.ogg", tmp_path / "a")

    assert await review_jobs.dispatch(app.session_factory, app.i18n) == 9  # 3 reviewers x 3 open cards
    await tg.wait_until(lambda: all(len(cards_of(r)) == 3 for r in reviewers), timeout=20)
    assert all(len([m for m in r.bot_messages() if "voice" in m]) == 3 for r in reviewers)
    async with sessions() as session:
        alices = sorted(
            await session.scalars(
                select(Assignment.contact_id)
                .join(User, User.id == Assignment.reviewer_id)
                .where(User.telegram_id == reviewers[0].id)
            )
        )
    await reviewers[0].send_command("cards")
    listed = message_text(await reviewers[0].skip_to(fragment("reviewer-open-cards", count=3)))
    assert listed == text("reviewer-open-cards", count=3, ids=", ".join(f"#{i}" for i in alices))

    alice = reviewers[0]
    card = cards_of(alice)[0]
    for key in ("greeting", "presentation", "presentation", "offer", "politeness", "real_customer"):
        before = state_of(alice, card)
        await alice.press(alice.last_state(card), criterion(key))
        await tg.wait_until(lambda before=before: state_of(alice, card) != before)
    # (1 + 3*1/3 + 2 + 1 + 2) / 9
    assert text("card-score", score=78) in message_text(alice.last_state(card))
    await alice.press(alice.last_state(card), label("verdict-approve"))
    submitted = text("card-submitted", verdict=label("result-approve"), score=78)
    await tg.wait_until(lambda: message_text(alice.last_state(card)) == submitted)

    bob = reviewers[1]
    bob_card = cards_of(bob)[0]
    await bob.press(bob_card, label("verdict-reject"))
    assert (await bob.callback_answer(bob.last_query)).get("text") == label("review-missing-marks")
    for key in ("greeting", "presentation", "offer", "politeness", "real_customer"):
        before = state_of(bob, bob_card)
        await bob.press(bob.last_state(bob_card), criterion(key))
        await tg.wait_until(lambda before=before: state_of(bob, bob_card) != before)
    await _submit(tg, bob, bob.last_state(bob_card), "reject", "No offer to buy was made")
    await app.settled()

    async with sessions() as session:
        reviews = list(await session.scalars(select(Review).order_by(Review.id)))
        assert [(r.verdict, r.score, r.comment) for r in reviews] == [
            (Verdict.APPROVE, 77.8, None),
            (Verdict.REJECT, 66.7, "No offer to buy was made"),
        ]
        statuses = [c.status for c in await session.scalars(select(Contact).order_by(Contact.id))]
    assert statuses.count(ContactStatus.REVIEWED) == 2 and statuses.count(ContactStatus.QUEUED) == 1

    # The 60-second undo window passes; then the promoter hears, without learning who reviewed.
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.dedupe_key.like("feedback:%"))
            .values(not_before=utcnow())
        )
    feedback = pattern("feedback")
    await tg.wait_until(
        lambda: sum(bool(feedback.search(message_text(m))) for m in promoter.bot_messages()) == 2
    )
    approved_text = text(
        "feedback",
        id=reviews[0].contact_id,
        verdict=label("result-approve"),
        score=78,
        failed="—",
        comment="—",
    )
    rejected_text = text(
        "feedback",
        id=reviews[1].contact_id,
        verdict=label("result-reject"),
        score=67,
        failed=criterion("presentation"),
        comment="No offer to buy was made",
    )
    [approved] = [m for m in promoter.bot_messages() if message_text(m) == approved_text]
    [rejected] = [m for m in promoter.bot_messages() if message_text(m) == rejected_text]
    assert not any(name in message_text(m) for m in (approved, rejected) for name in ("Rev0", "Rev1", "Rev2"))
    assert label("my-dispute-button", id=reviews[1].contact_id) in [b["text"] for b in buttons(rejected)]


async def test_sla_expiry_reassigns_and_alerts_manager(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions, max_open_cards=1, sla_expiries_before_alert=2)
    first = await join(tg, sessions, project, Role.REVIEWER, 3101, "First")
    second = await join(tg, sessions, project, Role.REVIEWER, 3102, "Second")
    manager = await join(tg, sessions, project, Role.MANAGER, 3901, "Boss")
    _, [contact_id] = await pavel_with_contacts(
        tg, sessions, project, 2001, 1, audio_dir / "dialogue.ogg", tmp_path / "a"
    )

    t0 = utcnow()
    assert await review_jobs.dispatch(app.session_factory, app.i18n, now=t0) == 1
    await tg.wait_until(lambda: len(cards_of(first)) + len(cards_of(second)) == 1)
    holder, other = (first, second) if cards_of(first) else (second, first)
    card = cards_of(holder)[0]

    await until_done(
        review_jobs.expire,
        1,
        session_factory=app.session_factory,
        i18n=app.i18n,
        now=t0 + dt.timedelta(minutes=16),
    )
    expired = text("card-expired", id=contact_id)
    await tg.wait_until(lambda: message_text(holder.last_state(card)) == expired)
    assert buttons(holder.last_state(card)) == []
    late = await holder.press(card, data=f"c:mark:{await _assignment_id(sessions, contact_id, holder.id)}:0")
    assert (await holder.callback_answer(late))["text"] == label("card-closed")

    t1 = t0 + dt.timedelta(minutes=17)
    assert await review_jobs.dispatch(app.session_factory, app.i18n, now=t1) == 1
    await tg.wait_until(
        lambda: len(cards_of(other)) == 1, timeout=20
    )  # the next reviewer, never the same one again
    assert cards_of(holder) == []  # no new card for the reviewer who let it expire
    await until_done(
        review_jobs.expire,
        1,
        session_factory=app.session_factory,
        i18n=app.i18n,
        now=t1 + dt.timedelta(minutes=16),
    )
    await manager.expect(text("alert-sla", id=contact_id, project=project.name, count=2))
    async with sessions() as session:
        attempts = list(
            await session.scalars(
                select(Assignment.attempt).where(Assignment.contact_id == contact_id).order_by(Assignment.id)
            )
        )
        contact = await session.get(Contact, contact_id)
    assert attempts == [1, 2] and contact is not None and contact.status == ContactStatus.QUEUED


async def _submit(
    tg: StandIn,
    reviewer: UserClient,
    card: dict,  # type: ignore[type-arg]
    verdict: str,
    comment: str,
) -> None:
    """A verdict that needs a comment ("reject" or "fraud"), pressed and commented: waits until the card says
    it was submitted with that verdict."""
    await reviewer.press(card, label(f"verdict-{verdict}"))
    await reviewer.skip_to(fragment("comment-required"))
    await reviewer.send_text(comment)
    submitted = fragment("card-submitted", verdict=label(f"result-{verdict}"))
    await tg.wait_until(lambda: submitted in message_text(reviewer.last_state(card)))


async def _one_card(
    app: Runtime,
    tg: StandIn,
    sessions: async_sessionmaker[AsyncSession],
    project: Project,
    reviewer: UserClient,
    promoter_tg: int,
    recordings: tuple[Path, Path],
) -> tuple[int, dict]:  # type: ignore[type-arg]
    """One contact of the promoter's, dispatched: its id and the card the (only) reviewer on shift got.
    `recordings`: the dialogue to submit and the storage folder."""
    [contact_id] = await seed_contacts(sessions, tg, project, promoter_tg, 1, *recordings)
    await review_jobs.dispatch(app.session_factory, app.i18n)
    await tg.wait_until(lambda: len(cards_of(reviewer)) == 1, timeout=20)
    return contact_id, cards_of(reviewer)[0]


async def _assignment_id(
    sessions: async_sessionmaker[AsyncSession], contact_id: int, reviewer_tg: int
) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(
                select(Assignment.id)
                .join(User, User.id == Assignment.reviewer_id)
                .where(Assignment.contact_id == contact_id, User.telegram_id == reviewer_tg)
            )
            or 0
        )


async def test_group_take_has_one_winner(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions, reviewers_chat_id=-100777)
    group = tg.group(-100777, "Reviewers", token=TOKEN)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3201, "Anna", on_shift=False)
    boris = await join(tg, sessions, project, Role.REVIEWER, 3202, "Boris", on_shift=False)
    pavel, [contact_id] = await pavel_with_contacts(
        tg, sessions, project, 2002, 1, audio_dir / "dialogue.ogg", tmp_path / "a"
    )

    assert await review_jobs.dispatch(app.session_factory, app.i18n) == 1
    # A group gets the default language.
    offer = await group.expect(text("offer-text", "ru", id=contact_id, project=project.name))
    # The offer's Take, forged from a private chat (issue #14 item 11): refused, and nothing there edited.
    joined = anna.last()
    forged = await anna.press(joined, data=buttons(offer)[0]["callback_data"])
    assert (await anna.callback_answer(forged))["text"] == label("button-invalid")
    assert message_text(anna.last_state(joined)) == message_text(joined)
    take = label("btn-take", "ru")
    intruder = await group.press(pavel, offer, take)  # a promoter in the group is not a reviewer
    first = await group.press(anna, offer, take)
    second = await group.press(boris, offer, take)
    answers = {
        name: (await group.callback_answer(q))["text"] for name, q in (("Anna", first), ("Boris", second))
    }
    winners = [name for name, answer in answers.items() if answer == label("take-won")]
    losers = [name for name, answer in answers.items() if answer == label("take-lost")]
    assert len(winners) == 1 and len(losers) == 1  # one winner, the other told politely
    assert (await group.callback_answer(intruder))["text"] == label("button-invalid")
    winner, loser = {"Anna": anna, "Boris": boris}[winners[0]], {"Anna": anna, "Boris": boris}[losers[0]]
    taken = text("offer-taken", "ru", id=contact_id, name=winners[0])
    await tg.wait_until(lambda: message_text(group.last()) == taken)
    await tg.wait_until(lambda: len(cards_of(winner)) == 1)
    assert cards_of(loser) == []
    async with sessions() as session:
        [assignment] = list(await session.scalars(select(Assignment)))
    assert assignment.status == AssignmentStatus.OPEN and assignment.deadline_at is not None


async def test_forged_presses_change_nothing(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3301, "Anna")
    boris = await join(tg, sessions, project, Role.REVIEWER, 3302, "Boris", on_shift=False)
    pavel = await join(tg, sessions, project, Role.PROMOTER, 2003, "Pavel")
    contact_id, card = await _one_card(
        app, tg, sessions, project, anna, 2003, (audio_dir / "dialogue.ogg", tmp_path / "a")
    )
    assignment_id = await _assignment_id(sessions, contact_id, anna.id)

    other_reviewer = await boris.press(card, data=f"c:verdict:{assignment_id}:0")
    assert (await boris.callback_answer(other_reviewer))["text"] == label("button-forbidden")
    forwarded = await pavel.press(
        card, data=f"c:verdict:{assignment_id}:2"
    )  # a promoter with a forwarded card
    assert (await pavel.callback_answer(forwarded))["text"] == label("button-invalid")
    bad_index = await anna.press(card, data=f"c:mark:{assignment_id}:99")
    assert (await anna.callback_answer(bad_index))["text"] == label("button-invalid")
    garbage = await anna.press(card, data="c:mark:notanumber")
    assert (await anna.callback_answer(garbage))["text"] == label("button-invalid")
    await app.settled()
    async with sessions() as session:
        assignment = await session.get(Assignment, assignment_id)
        assert (
            assignment is not None
            and assignment.draft_marks == {}
            and assignment.status == AssignmentStatus.OPEN
        )
        assert list(await session.scalars(select(Review))) == []


async def test_undo_within_a_minute(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3401, "Anna")
    await join(tg, sessions, project, Role.PROMOTER, 2004, "Pavel")
    _, card = await _one_card(
        app, tg, sessions, project, anna, 2004, (audio_dir / "dialogue.ogg", tmp_path / "a")
    )
    await _submit(tg, anna, card, "fraud", "Same voice as yesterday's customer")
    await anna.press(anna.last_state(card), label("btn-undo"))
    # The card again, unmarked: a score of 0.
    await tg.wait_until(lambda: text("card-score", score=0) in message_text(anna.last_state(card)))
    await app.settled()
    async with sessions() as session:
        [undone] = list(await session.scalars(select(Review)))
        feedback = (
            await session.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("feedback:%")))
        ).one()
        contact = (await session.scalars(select(Contact))).one()
    assert undone.undone_at is not None and feedback.status == OutboxStatus.CANCELLED
    assert contact.status == ContactStatus.IN_REVIEW and contact.final_verdict is None

    await anna.press(anna.last_state(card), label("verdict-fraud"))  # the comment is kept on the card
    fraud = fragment("card-submitted", verdict=label("result-fraud"))
    await tg.wait_until(lambda: fraud in message_text(anna.last_state(card)))
    await app.settled()
    async with sessions() as session, session.begin():
        await session.execute(update(Review).values(created_at=utcnow() - dt.timedelta(seconds=61)))
    late = await anna.press(anna.last_state(card), label("btn-undo"))
    assert (await anna.callback_answer(late))["text"] == label("undo-too-late")


async def test_daily_rereview_goes_to_a_senior_and_is_final(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3501, "Anna")
    senior = await join(tg, sessions, project, Role.REVIEWER, 3502, "Sergei", on_shift=False, senior=True)
    pavel, [contact_id] = await pavel_with_contacts(
        tg, sessions, project, 2005, 1, audio_dir / "dialogue.ogg", tmp_path / "a"
    )
    await review_jobs.dispatch(app.session_factory, app.i18n)
    await tg.wait_until(lambda: len(cards_of(anna)) == 1, timeout=20)
    async with sessions() as session, session.begin():
        assignment = (await session.scalars(select(Assignment))).one()
        assignment.draft_marks = {
            "greeting": 1,
            "presentation": 1,
            "offer": 0,
            "politeness": 1,
            "real_customer": 1,
        }
        assignment.draft_comment = "weak"
    anna_card = cards_of(anna)[0]
    await anna.press(anna_card, label("verdict-reject"))
    rejected = fragment("card-submitted", verdict=label("result-reject"))
    await tg.wait_until(lambda: rejected in message_text(anna.last_state(anna_card)))
    await app.settled()
    async with sessions() as session, session.begin():
        promoter = (await session.scalars(select(User).where(User.telegram_id == pavel.id))).one()
        await intake.open_dispute(session, promoter, contact_id, "The customer bought two packs")

    morning = dt.datetime(2030, 5, 6, 6, 59, tzinfo=dt.UTC)  # 09:59 in Moscow: not yet
    assert await review_jobs.rereview(app.session_factory, app.i18n, now=morning) == 0
    assert (
        await review_jobs.rereview(app.session_factory, app.i18n, now=morning + dt.timedelta(minutes=2)) == 1
    )
    assert (
        await review_jobs.rereview(app.session_factory, app.i18n, now=morning + dt.timedelta(minutes=3)) == 0
    )
    await tg.wait_until(lambda: len(cards_of(senior)) == 1, timeout=20)
    card = cards_of(senior)[0]
    assert text("card-kind-rereview") in message_text(card)
    for key in ("greeting", "presentation", "offer", "politeness", "real_customer"):
        before = state_of(senior, card)
        await senior.press(senior.last_state(card), criterion(key))
        await tg.wait_until(lambda before=before: state_of(senior, card) != before)
    await senior.press(senior.last_state(card), label("verdict-approve"))
    approved = fragment("card-submitted", verdict=label("result-approve"))
    await tg.wait_until(lambda: approved in message_text(senior.last_state(card)))
    await app.settled()
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
        dispute = (await session.scalars(select(Dispute))).one()
        kinds = list(await session.scalars(select(Assignment.kind).order_by(Assignment.id)))
        reviews = list(await session.scalars(select(Review.verdict).order_by(Review.id)))
    assert (
        contact is not None
        and contact.status == ContactStatus.FINAL
        and contact.final_verdict == Verdict.APPROVE
    )
    assert dispute.status == DisputeStatus.RESOLVED and dispute.resolution_review_id is not None
    assert kinds == [AssignmentKind.PRIMARY, AssignmentKind.REREVIEW] and reviews == [
        Verdict.REJECT,
        Verdict.APPROVE,
    ]


def test_plan_rules() -> None:
    slots = [ReviewerSlot(1, 2, 3), ReviewerSlot(2, 0, 3), ReviewerSlot(3, 1, 3)]
    contacts = [
        (10, 1),
        (11, 9),
        (12, 9),
        (13, 9),
        (14, 9),
        (15, 9),
        (16, 9),
    ]  # contact 10 is reviewer 1's own
    planned = plan(contacts, slots, excluded={11: {2}})
    assert planned[0] == (10, 2)  # least loaded, and never the promoter
    assert planned[1] == (11, 3)  # reviewer 2 already had contact 11
    loads: dict[int, int] = {}
    for _, reviewer in planned:
        loads[reviewer] = loads.get(reviewer, 0) + 1
    assert {1: 2 + loads.get(1, 0), 2: loads[2], 3: 1 + loads[3]} == {
        1: 3,
        2: 3,
        3: 3,
    }  # everyone filled to K
    assert len(planned) == 6 and 16 not in [c for c, _ in planned]  # free capacity 1 + 3 + 2; one waits


async def test_outbox_survives_a_429_storm_and_a_restart(
    app: Runtime, tg: StandIn, db: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from infra.messages import SendText
    from infra.outbox import enqueue

    people = [tg.user(4100 + i, f"U{i}", token=TOKEN) for i in range(4)]
    async with sessions() as session, session.begin():
        for n in range(10):
            for person in people:
                await enqueue(session, person.id, SendText(text=f"note {n}"), dedupe_key=f"t:{person.id}:{n}")
        assert not await enqueue(
            session, people[0].id, SendText(text="again"), dedupe_key=f"t:{people[0].id}:0"
        )
    await app.close()  # stop the runtime's own sender: this test drives senders by hand
    tg.fail_next("sendMessage", status=429, retry_after=1, times=6)
    fast = RateLimiter(per_second=30, chat_interval=0.05)
    first = OutboxSender(app.bot, db, limiter=fast)
    stop = asyncio.Event()
    task = asyncio.create_task(first.drain(stop, settle=True))
    await tg.wait_until(lambda: sum(len(p.bot_messages()) for p in people) >= 12, timeout=30)
    stop.set()  # a restart, mid-way through the storm
    await task
    second = OutboxSender(app.bot, db, limiter=RateLimiter(per_second=30, chat_interval=0.05))
    await second.drain(settle=True)
    for person in people:
        assert [message_text(m) for m in person.bot_messages()] == [f"note {n}" for n in range(10)]
    async with sessions() as session:
        statuses = set(await session.scalars(select(OutboxMessage.status)))
    assert statuses == {OutboxStatus.SENT}


def test_cohen_kappa_known_example() -> None:
    from services.reviewer_agreement import cohen_kappa

    # 50 items: both say yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> observed .70, chance .50, kappa .40
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    kappa = cohen_kappa(first, second)
    assert kappa is not None and abs(kappa - 0.4) < 1e-9
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # one category only: undefined, not 1


async def test_agreement_on_doubly_reviewed_contacts(sessions: async_sessionmaker[AsyncSession]) -> None:
    from services.reviewer_agreement import agreement

    project = await seed_project(sessions)
    async with sessions() as session, session.begin():
        people = [User(telegram_id=5000 + i, first_name=f"P{i}") for i in range(3)]
        session.add_all(people)
        await session.flush()
        promoter, r1, r2 = people
        verdict_pairs = [
            (Verdict.APPROVE, Verdict.APPROVE),
            (Verdict.APPROVE, Verdict.REJECT),
            (Verdict.REJECT, Verdict.REJECT),
            (Verdict.REJECT, Verdict.REJECT),
        ]
        for v1, v2 in verdict_pairs:
            contact = Contact(project_id=project.id, promoter_id=promoter.id, status=ContactStatus.REVIEWED)
            session.add(contact)
            await session.flush()
            for reviewer, verdict, greeting in ((r1, v1, 1), (r2, v2, 1 if v2 == Verdict.APPROVE else 0)):
                await add_review(
                    session, contact.id, reviewer.id, verdict, utcnow(), marks={"greeting": greeting}
                )
    async with sessions() as session:
        result = await agreement(session, project.id)
    # Verdicts agree on 3 of 4; chance (2*1 + 2*3)/16 = .5 -> kappa .5 for both reviewers.
    assert result.pairs == 4
    assert result.verdict_kappa_by_reviewer == {r1.id: 0.5, r2.id: 0.5}
    assert result.criterion_agreement == {"greeting": 0.25}


async def test_calibration_sample_gets_a_blind_second_review(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions, calibration_share=1.0)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3601, "Anna")
    boris = await join(tg, sessions, project, Role.REVIEWER, 3602, "Boris", on_shift=False)
    await join(tg, sessions, project, Role.PROMOTER, 2006, "Pavel")
    contact_id, card = await _one_card(
        app, tg, sessions, project, anna, 2006, (audio_dir / "dialogue.ogg", tmp_path / "a")
    )
    await _submit(tg, anna, card, "fraud", "Friend posing as a customer")
    await app.settled()

    async with sessions() as session, session.begin():
        await session.execute(
            update(Membership)
            .where(
                Membership.user_id == select(User.id).where(User.telegram_id == boris.id).scalar_subquery()
            )
            .values(on_shift=True)
        )
    assert await review_jobs.dispatch(app.session_factory, app.i18n) == 1
    await tg.wait_until(lambda: len(cards_of(boris)) == 1, timeout=20)
    second = cards_of(boris)[0]
    assert text("card-kind-calibration") in message_text(second)
    assert "Friend posing" not in message_text(second)  # blind
    async with sessions() as session:
        kinds = list(
            await session.scalars(
                select(Assignment.kind).where(Assignment.contact_id == contact_id).order_by(Assignment.id)
            )
        )
    assert kinds == [AssignmentKind.PRIMARY, AssignmentKind.CALIBRATION]


async def test_flags_are_shown_on_the_card(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    from models import FlagKind, VoiceFlag

    project = await seed_project(sessions)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3701, "Anna")
    _, (first, second) = await pavel_with_contacts(
        tg, sessions, project, 2007, 2, audio_dir / "dialogue.ogg", tmp_path / "a"
    )
    async with sessions() as session, session.begin():
        session.add(
            VoiceFlag(
                contact_id=second,
                kind=FlagKind.CUSTOMER_IS_OTHER_PROMOTER,
                score=0.91,
                matched_contact_ids=[first],
            )
        )
        await session.execute(update(Contact).where(Contact.id == second).values(priority=5))
    await review_jobs.dispatch(app.session_factory, app.i18n)
    await tg.wait_until(lambda: len(cards_of(anna)) == 2, timeout=20)
    flagged, plain = cards_of(anna)  # the flagged contact comes first
    assert text("card-title", id=second, project=project.name) in message_text(flagged)
    flag = label("flag-customer-is-other-promoter")
    assert text("card-flag", flag=flag, score="0.91", matches=f"#{first}") in message_text(flagged)
    assert not [key for key in FLAG_LINES if pattern(key).search(message_text(plain))]


async def test_double_tap_on_a_verdict_writes_one_review_and_says_so(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    """Issue #14 item 9: two presses of Approve at once (on PostgreSQL they ran side by side and the second
    failed on the contact's state: "Something went wrong") write one review; the other press is told the
    card was already submitted, and nobody is left waiting for a comment."""
    project = await seed_project(sessions)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3401, "Anna")
    await join(tg, sessions, project, Role.PROMOTER, 2004, "Pavel")
    contact_id, card = await _one_card(
        app, tg, sessions, project, anna, 2004, (audio_dir / "dialogue.ogg", tmp_path / "a")
    )
    assignment_id = await _assignment_id(sessions, contact_id, anna.id)
    async with sessions() as session, session.begin():
        marks = {"greeting": 1, "presentation": 3, "offer": 1, "politeness": 1, "real_customer": 1}
        await session.execute(
            update(Assignment).where(Assignment.id == assignment_id).values(draft_marks=marks)
        )

    first = await anna.press(card, data=f"c:verdict:{assignment_id}:0")
    second = await anna.press(card, data=f"c:verdict:{assignment_id}:0")
    answers = [(await anna.callback_answer(q)).get("text") or "" for q in (first, second)]
    await app.settled()
    assert sorted(answers) in (["", label("card-closed")], ["", label("review-already-submitted")])
    async with sessions() as session:
        reviews = list(await session.scalars(select(Review).where(Review.assignment_id == assignment_id)))
        contact = await session.get(Contact, contact_id)
    assert len(reviews) == 1 and reviews[0].verdict == Verdict.APPROVE
    assert contact is not None and contact.status == ContactStatus.REVIEWED
    went_wrong = (text("error-generic"), text("error-after-save"))
    assert not [m for m in anna.bot_messages() if any(t in message_text(m) for t in went_wrong)]
    assert not [m for m in anna.bot_messages() if pattern("comment-required").search(message_text(m))]


async def test_reviewer_who_refuses_voice_notes_gets_the_recording_as_a_file(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    """Issue #14 item 14: a reviewer whose Telegram accepts voice notes from contacts only (sendVoice answers
    VOICE_MESSAGES_FORBIDDEN) still gets the recording, as a document whose caption says why, then the card."""
    project = await seed_project(sessions)
    rita = await join(tg, sessions, project, Role.REVIEWER, 3402, "Rita")
    rita.forbid_voice_messages()
    await join(tg, sessions, project, Role.PROMOTER, 2005, "Pavel")
    recording = audio_dir / "dialogue.ogg"
    [contact_id] = await seed_contacts(sessions, tg, project, 2005, 1, recording, app.settings.storage_root)
    await review_jobs.dispatch(app.session_factory, app.i18n)
    await tg.wait_until(lambda: len(cards_of(rita)) == 1, timeout=20)  # the card, with its buttons
    [as_file] = [m for m in rita.bot_messages() if "document" in m]
    assert message_text(as_file) == text("card-voice-as-file", id=contact_id)
    stored = tg.world.files[as_file["document"]["file_id"]]
    assert stored.path.read_bytes()[:4] == b"OggS"  # the recording itself, not a placeholder
    assert not [m for m in rita.bot_messages() if "voice" in m]
    async with sessions() as session:
        failed = list(
            await session.scalars(select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.FAILED))
        )
    assert failed == []
