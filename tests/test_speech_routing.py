"""Speech routing (issue #25 item 4): the pure policy rule by rule, its settings, and with the real bot
and database: routing off sends a card as before, a clear approval is decided with no card and the
promoter told, a voice flag sends a card, a script under the pass mark is rejected with what was missing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from jobs import review as review_jobs
from models import (
    AnalysisState,
    AnalysisTask,
    Assignment,
    Audio,
    Contact,
    ContactStatus,
    FlagKind,
    Project,
    Review,
    Role,
    Verdict,
    VoiceFlag,
)
from services import billing
from services.speech.routing import AUTOMATIC, PERSON
from telegram_standin import StandIn
from telegram_standin.driver import buttons, message_text
from tests.helpers import cards_of, join, label, seed_contacts, seed_project, text
from tests.helpers import speech_report as report


# -- with the real bot and database --------------------------------------------------------------------
async def _seed_analysis(
    sessions: async_sessionmaker[AsyncSession], contact_id: int, speech: dict[str, Any], *flags: FlagKind
) -> None:
    """What the voice worker stores (jobs/voice.py), written directly instead of running Whisper."""
    async with sessions() as session, session.begin():
        task = await session.scalar(
            select(AnalysisTask)
            .join(Audio, Audio.id == AnalysisTask.audio_id)
            .where(Audio.contact_id == contact_id)
        )
        assert task is not None
        task.state, task.speech = AnalysisState.DONE, speech
        for kind in flags:
            session.add(VoiceFlag(contact_id=contact_id, kind=kind, score=0.9))


async def _set_speech(
    sessions: async_sessionmaker[AsyncSession], project: Project, settings: dict[str, Any]
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(Project).where(Project.id == project.id).values(speech_settings=settings)
        )


async def _contact(sessions: async_sessionmaker[AsyncSession], contact_id: int) -> Contact:
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
        assert contact is not None
        return contact


async def _billed(sessions: async_sessionmaker[AsyncSession], project: Project) -> int:
    """The project's validated contacts around today, as billing counts them."""
    today = dt.datetime.now(dt.UTC).date()
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None
        counts = await billing.count_contacts(
            await session.connection(), stored, today - dt.timedelta(days=2), today + dt.timedelta(days=1)
        )
    return sum(counts.values())


ROUTING = {"enabled": True, "routing": True, "audit_share": 0.0, "new_promoter_contacts": 0}


async def test_routing_off_sends_a_card_as_before(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions)
    await _set_speech(sessions, project, {"enabled": True})  # speech analysed, routing not turned on
    anna = await join(tg, sessions, project, Role.REVIEWER, 3901, "Anna")
    await join(tg, sessions, project, Role.PROMOTER, 2901, "Pavel")
    [contact_id] = await seed_contacts(
        sessions, tg, project, 2901, 1, audio_dir / "dialogue.ogg", tmp_path / "a"
    )
    await _seed_analysis(sessions, contact_id, report())

    assert await review_jobs.dispatch(app.session_factory, app.i18n) == 1
    await tg.wait_until(lambda: len(cards_of(anna)) == 1, timeout=20)
    contact = await _contact(sessions, contact_id)
    assert contact.status == ContactStatus.IN_REVIEW and contact.routed_to is None


async def test_routing_decides_a_clear_approval_and_sends_a_flag_to_a_person(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    project = await seed_project(sessions)
    await _set_speech(sessions, project, ROUTING)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3902, "Anna")
    pavel = await join(tg, sessions, project, Role.PROMOTER, 2902, "Pavel")
    clear, flagged = await seed_contacts(
        sessions, tg, project, 2902, 2, audio_dir / "dialogue.ogg", tmp_path / "a"
    )
    await _seed_analysis(sessions, clear, report())
    await _seed_analysis(sessions, flagged, report(), FlagKind.NO_CUSTOMER)

    assert await review_jobs.dispatch(app.session_factory, app.i18n) == 1  # one card: the flagged contact
    await tg.wait_until(lambda: len(cards_of(anna)) == 1, timeout=20)
    assert text("card-title", id=flagged, project=project.name) in message_text(cards_of(anna)[0])
    # Approved, nothing of the script missed (the report's checks are all done).
    told = await pavel.skip_to(
        text("feedback-automatic", id=clear, verdict=label("result-approve"), failed="—")
    )
    assert await _billed(sessions, project) == 1  # billed as any approved contact
    await pavel.press(told, label("my-dispute-button", id=clear))  # disputed as a reviewer's verdict is
    await pavel.expect(text("dispute-ask-reason", id=clear))
    await pavel.send_text("The customer bought two packs")
    await pavel.expect(text("dispute-opened", id=clear))

    decided, sent = await _contact(sessions, clear), await _contact(sessions, flagged)
    assert (decided.status, decided.final_verdict, decided.routed_to) == (
        ContactStatus.DISPUTED,
        Verdict.APPROVE,
        AUTOMATIC,
    )
    assert decided.reviewed_at is not None
    assert (sent.status, sent.final_verdict, sent.routed_to) == (ContactStatus.IN_REVIEW, None, PERSON)
    async with sessions() as session:
        assert list(await session.scalars(select(Review))) == []  # no reviewer wrote anything
        assert [a.contact_id for a in await session.scalars(select(Assignment))] == [flagged]
        task = await session.scalar(
            select(AnalysisTask)
            .join(Audio, Audio.id == AnalysisTask.audio_id)
            .where(Audio.contact_id == flagged)
        )
        assert task is not None and task.speech is not None
        assert task.speech["routing"] == {"route": PERSON, "verdict": None, "reasons": ["flag:no_customer"]}
    assert await _billed(sessions, project) == 0  # under dispute now, as a reviewer's approval would be


# -- the audit comparison -------------------------------------------------------------------------------
def test_compare_counts_agreement_kappa_precision_recall_and_criteria() -> None:
    from services.automatic import AuditPair, compare

    pairs = [
        AuditPair("approve", "approve", {"greeting": "done", "offer": "done"}, {"greeting": 1, "offer": 1}),
        AuditPair("approve", "reject", {"greeting": "done", "offer": "done"}, {"greeting": 1, "offer": 0}),
        AuditPair(
            "reject", "reject", {"greeting": "not_done", "offer": "unsure"}, {"greeting": 0, "offer": 0}
        ),
        AuditPair("reject", "approve", {"greeting": "not_done"}, {"greeting": 1}),
    ]
    found = compare(pairs)
    assert (found.pairs, found.agreement, found.kappa) == (4, 0.5, 0.0)
    assert (found.precision, found.recall) == (0.5, 0.5)
    assert found.criteria == {"greeting": (4, 0.75), "offer": (2, 0.5)}  # an unsure check is not compared
    empty = compare([])
    assert (empty.pairs, empty.agreement, empty.kappa, empty.precision, empty.criteria) == (
        0,
        None,
        None,
        None,
        {},
    )


async def test_audit_agreement_reads_the_audited_reviews(sessions: async_sessionmaker[AsyncSession]) -> None:
    from models import User
    from services.automatic import audit_agreement
    from tests.helpers import add_contact, add_review

    project = await seed_project(sessions)
    audited = {"routing": {"route": PERSON, "verdict": None, "reasons": ["audit"]}}
    flagged = {"routing": {"route": PERSON, "verdict": None, "reasons": ["flag:no_customer"]}}
    async with sessions() as session, session.begin():
        promoter, reviewer = User(telegram_id=1, first_name="Pavel"), User(telegram_id=2, first_name="Anna")
        session.add_all([promoter, reviewer])
        await session.flush()
        for routing, verdict in (
            (audited, Verdict.APPROVE),
            (audited, Verdict.FRAUD),
            (flagged, Verdict.APPROVE),
        ):
            contact, audio = await add_contact(session, project.id, promoter.id)
            contact.routed_to = PERSON
            speech = {
                **report("approve", 0.9, {"key": "greet", "status": "done", "scorecard": "greeting"}),
                **routing,
            }
            session.add(AnalysisTask(audio_id=audio.id, state=AnalysisState.DONE, speech=speech))
            await add_review(
                session, contact.id, reviewer.id, verdict, dt.datetime.now(dt.UTC), marks={"greeting": 1}
            )
    async with sessions() as session:
        found = await audit_agreement(session, project.id)
    # Two audited contacts (the flagged one is no sample of the machine's): one agreeing, fraud as a rejection.
    assert (found.pairs, found.agreement, found.precision, found.recall) == (2, 0.5, 0.5, 1.0)
    assert found.criteria == {"greeting": (2, 1.0)}


async def test_routing_rejects_a_script_under_the_pass_mark_and_says_what_was_missing(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    """Two of five script items heard, each clearly: under the default pass mark (more than half) the
    verdict rejects it with no person, and the promoter is told which items were not heard, with the
    dispute button; the old band (0.75 / 0.35) would have sent it to a reviewer."""
    from services.speech.script import Check
    from services.speech.verdict import VerdictRules, decide

    checks = [
        Check("greeting", "done", 0.95, scorecard="greeting"),
        Check("product_named", "not_done", 0.9, scorecard="presentation"),
        Check("presentation", "done", 0.95, scorecard="presentation"),
        Check("offer", "not_done", 0.9, scorecard="offer"),
        Check("goodbye", "not_done", 0.9, scorecard="politeness"),
        Check("customer_share", "done", 0.95, critical=True, scorecard="real_customer"),
    ]
    verdict = decide(checks, 0.8)
    assert (verdict.decision, verdict.confidence) == ("reject", 0.9)
    assert decide(checks, 0.8, rules=VerdictRules(approve_share=0.75, reject_share=0.35)).decision == (
        "for_person"
    )
    speech = {"language": "ru", "segments": [], "checks": [c.as_dict() for c in checks]}
    speech["verdict"] = verdict.as_dict()

    project = await seed_project(sessions)
    await _set_speech(sessions, project, ROUTING)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3903, "Anna")
    pavel = await join(tg, sessions, project, Role.PROMOTER, 2903, "Pavel")
    [contact_id] = await seed_contacts(
        sessions, tg, project, 2903, 1, audio_dir / "dialogue.ogg", tmp_path / "a"
    )
    await _seed_analysis(sessions, contact_id, speech)

    assert await review_jobs.dispatch(app.session_factory, app.i18n) == 0  # no card for anyone
    missing = "Product presentation, Asked for the sale, Politeness"  # the scorecard's names, once each
    told = await pavel.skip_to(
        text("feedback-automatic", id=contact_id, verdict=label("result-reject"), failed=missing)
    )
    assert [b["text"] for b in buttons(told)] == [label("my-dispute-button", id=contact_id)]
    contact = await _contact(sessions, contact_id)
    assert (contact.status, contact.final_verdict, contact.routed_to) == (
        ContactStatus.REVIEWED,
        Verdict.REJECT,
        AUTOMATIC,
    )
    assert cards_of(anna) == []
    assert await _billed(sessions, project) == 0
