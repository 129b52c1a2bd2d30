"""The audit of automatic verdicts in the daily digest and criteria handed back to people (issue #25 item 4),
on a real database with the real bot: the digest shows the audit block to the manager (both languages) and
logs it; a criterion below the project's bar goes back to people with the digest that says so, and routing
then sends every contact that checks it to a reviewer; it comes back to the machine when reviewers agree
with it again on audit pairs made after its return (never on the ones that returned it), or when a manager
brings it back (`fieldcheck speech restore`)."""

from __future__ import annotations

import datetime as dt
import html
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from bot.app import Runtime
from infra.settings import PROJECT_ROOT
from infra.storage import AudioStore, create_audio_store
from jobs import digest as digest_job
from models import (
    AnalysisState,
    AnalysisTask,
    Audio,
    Contact,
    ContactStatus,
    CriterionReturn,
    DigestLog,
    Project,
    Role,
    Verdict,
)
from services import automatic
from services import digest as digest_service
from services.speech.routing import AUTOMATIC, PERSON
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from telegram_ui.cards import rendered
from telegram_ui.digest_cards import digest_text
from tests.helpers import (
    add_contact,
    add_review,
    add_users,
    criterion,
    fragment,
    join,
    label,
    pattern,
    run_cli,
    seed_project,
    text,
)

MOSCOW = dt.timezone(dt.timedelta(hours=3))
DAY = dt.date(2026, 11, 30)
ROUTING = {
    "enabled": True,
    "routing": True,
    "audit_share": 0.0,
    "new_promoter_contacts": 0,
    "criterion_bar": 0.9,
    "criterion_min_pairs": 5,
}
CHECKS = [
    {"key": "greeting", "status": "done", "scorecard": "greeting"},
    {"key": "offer", "status": "done", "scorecard": "offer"},
]


def digest_time(day: dt.date) -> dt.datetime:
    """When the digest of `day` goes out: 09:00 Moscow the next morning."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(9, 0, 30), MOSCOW)


def digest_title(project: Project, day: dt.date) -> str:
    """The first line of `project`'s digest of `day`."""
    return text("digest-title", project=html.escape(project.name, quote=False), day=f"{day:%d.%m.%Y}")


def audited(key: str, rate: str, pairs: int, locale: str = "en") -> str:
    """A criterion as the digest's audit lines name it: its name, the reviewers' agreement, the pairs."""
    return f"{html.escape(criterion(key, locale), quote=False)} {rate} ({pairs})"


def _speech(checks: list[dict[str, Any]], reasons: list[str], leaning: str = "approve") -> dict[str, Any]:
    return {
        "language": "ru",
        "segments": [{"start": 0.0, "end": 2.0, "speaker": "promoter", "text": "Здравствуйте"}],
        "checks": checks,
        "verdict": {"decision": leaning, "confidence": 0.95, "leaning": leaning, "reasons": []},
        "routing": {"route": PERSON, "verdict": None, "reasons": reasons},
    }


async def _people(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as session, session.begin():
        promoter, reviewer = await add_users(session, (8001, "Pavel"), (8002, "Rita"))
        return promoter.id, reviewer.id


async def _audited(
    sessions: async_sessionmaker[AsyncSession],
    project: Project,
    people: tuple[int, int],
    day: dt.date,
    offer_marks: list[int],
    *,
    reasons: tuple[str, ...] = ("audit",),
    person: Verdict = Verdict.APPROVE,
    at: dt.datetime | None = None,
) -> None:
    """Audit contacts of `day` (submitted at noon, or `at`) the machine leaned to approve with greeting and
    offer done; the reviewer gave `person` and marked the greeting done and the offer as `offer_marks` says
    (0: not done)."""
    noon = at or dt.datetime.combine(day, dt.time(12), MOSCOW)
    async with sessions() as session, session.begin():
        for mark in offer_marks:
            contact, audio = await add_contact(session, project.id, people[0])
            contact.submitted_at, contact.routed_to = noon, PERSON
            contact.status, contact.final_verdict = ContactStatus.REVIEWED, person
            session.add(
                AnalysisTask(
                    audio_id=audio.id, state=AnalysisState.DONE, speech=_speech(CHECKS, list(reasons))
                )
            )
            await add_review(
                session,
                contact.id,
                people[1],
                person,
                noon + dt.timedelta(minutes=20),
                marks={"greeting": 1, "offer": mark},
            )


async def _queued(
    sessions: async_sessionmaker[AsyncSession], project: Project, promoter: int, checks: list[dict[str, Any]]
) -> int:
    """A queued contact whose analysis is done with a clear approval (nothing else sends it to a person)."""
    async with sessions() as session, session.begin():
        contact, audio = await add_contact(session, project.id, promoter)
        contact.status, contact.queued_at = ContactStatus.QUEUED, digest_time(DAY)
        speech = _speech(checks, [])
        del speech["routing"]
        session.add(AnalysisTask(audio_id=audio.id, state=AnalysisState.DONE, speech=speech))
        return contact.id


async def _route(sessions: async_sessionmaker[AsyncSession], project: Project) -> None:
    async with sessions() as session, session.begin():
        stored = await session.get(Project, project.id)
        assert stored is not None
        await automatic.route_queued(session, stored)


async def _routing_of(sessions: async_sessionmaker[AsyncSession], contact_id: int) -> tuple[str | None, Any]:
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
        task = await session.scalar(
            select(AnalysisTask)
            .join(Audio, Audio.id == AnalysisTask.audio_id)
            .where(Audio.contact_id == contact_id)
        )
        assert contact is not None and task is not None and task.speech is not None
        return contact.routed_to, task.speech["routing"]["reasons"]


def _store(app: Runtime) -> AudioStore:
    return create_audio_store(app.settings)


async def _project(sessions: async_sessionmaker[AsyncSession], speech: dict[str, Any] = ROUTING) -> Project:
    project = await seed_project(sessions, speech_settings=speech)
    return project


async def _returns(sessions: async_sessionmaker[AsyncSession]) -> list[CriterionReturn]:
    async with sessions() as session:
        return list(await session.scalars(select(CriterionReturn).order_by(CriterionReturn.id)))


async def _send(
    app: Runtime, sessions: async_sessionmaker[AsyncSession], day: dt.date
) -> list[dict[str, Any]]:
    with capture_logs() as logs:
        assert await digest_job.send_digests(app.db, app.i18n, _store(app), digest_time(day)) == 1
    return logs


async def test_a_criterion_under_the_bar_goes_back_to_people_with_the_digest_and_routing_follows(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await _project(sessions)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    people = await _people(sessions)
    # Six audited contacts: the reviewer agrees with the greeting every time, with the offer on 3 of 6.
    await _audited(sessions, project, people, DAY, [1, 1, 1, 0, 0, 0])
    # One the reviewer rejected though the machine leaned to approve (the offer marked done: 4 of 7), and
    # one sent to a person for a flag, no sample of the machine's: its offer marked against it is not counted.
    await _audited(sessions, project, people, DAY, [1], person=Verdict.REJECT)
    await _audited(sessions, project, people, DAY, [0], reasons=("flag:no_customer",))

    logs = await _send(app, sessions, DAY)
    seen = message_text(await manager.skip_to(digest_title(project, DAY)))
    figures = dict(days=30, pairs=7, agreement="86%", kappa="0.00", precision="86%", recall="100%")
    assert text("digest-audit", **figures) in seen
    assert text("digest-audit-returned", bar="90%", criteria=audited("offer", "57%", 7)) in seen
    assert not pattern("digest-audit-below").search(seen)  # the only one under it has just been returned
    [returned] = await _returns(sessions)
    assert (returned.project_id, returned.criterion, returned.pairs, returned.restored_at) == (
        project.id,
        "offer",
        7,
        None,
    )
    assert abs(returned.agreement - 4 / 7) < 1e-9
    assert [e for e in logs if e["event"] == "speech_criterion_returned"] == [
        {
            "event": "speech_criterion_returned",
            "log_level": "warning",
            "project_id": project.id,
            "criterion": "offer",
            "agreement": round(4 / 7, 4),
            "pairs": 7,
        }
    ]
    async with sessions() as session:
        logged = await session.scalar(select(DigestLog).where(DigestLog.project_id == project.id))
    assert logged is not None and logged.figures.audit is not None
    audit = logged.figures.audit
    assert (audit.pairs, audit.returned, audit.restored, audit.bar, audit.min_pairs) == (
        7,
        ["offer"],
        [],
        0.9,
        5,
    )
    assert [(c.key, c.pairs, c.returned) for c in audit.criteria] == [
        ("greeting", 7, False),
        ("offer", 7, True),
    ]

    # Routing now sends every contact that checks the offer to a person; one that does not is decided.
    checks_offer = await _queued(sessions, project, people[0], CHECKS)
    greets_only = await _queued(sessions, project, people[0], CHECKS[:1])
    await _route(sessions, project)
    assert await _routing_of(sessions, checks_offer) == (PERSON, ["criterion:offer"])
    assert (await _routing_of(sessions, greets_only))[0] == AUTOMATIC

    # The same block in Russian.
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None
        again = await digest_service.build_digest(session, stored, DAY, now=digest_time(DAY))
    russian = rendered(app.i18n, "ru", digest_text, again)
    assert label("digest-audit", "ru", **figures) in russian  # the digest's HTML, as the bot sends it
    # Recorded already: people decide it now, measured afresh from its return (no pair since).
    assert label("digest-audit-still", "ru", criteria=audited("offer", "—", 0, "ru")) in russian
    assert again.audit is not None and again.audit.changes == []


async def test_a_returned_criterion_comes_back_only_on_pairs_made_after_its_return(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await _project(sessions)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    people = await _people(sessions)
    await _audited(sessions, project, people, DAY, [1, 0, 0, 0, 0])  # the offer: 1 of 5
    await _send(app, sessions, DAY)
    await manager.skip_to(text("digest-audit-returned", bar="90%", criteria=audited("offer", "20%", 5)))

    # The next day reviewers agree with the offer 4 times of 4: too few since its return to judge it
    # (4 < 5), though all ten pairs of the window would also be judged (and found under the bar, 50%).
    nextday = DAY + dt.timedelta(days=1)
    await _audited(sessions, project, people, nextday, [1, 1, 1, 1])
    await _send(app, sessions, nextday)
    seen = message_text(await manager.skip_to(digest_title(project, nextday)))
    assert text("digest-audit-still", criteria=audited("offer", "100%", 4)) in seen
    assert not pattern("digest-audit-restored").search(seen)
    assert [r.restored_at for r in await _returns(sessions)] == [None]

    # One more agreeing pair: 5 of 5 since the return. All 10 together would be 60%, under the bar.
    third = nextday + dt.timedelta(days=1)
    await _audited(sessions, project, people, third, [1])
    logs = await _send(app, sessions, third)
    seen = message_text(await manager.skip_to(digest_title(project, third)))
    assert text("digest-audit-restored", bar="90%", criteria=audited("offer", "100%", 5)) in seen
    [row] = await _returns(sessions)
    assert (row.restored_by, row.restored_pairs, row.restored_agreement) == ("measured", 5, 1.0)
    assert row.restored_at == digest_time(third)
    assert [
        (e["event"], e["criterion"], e["by"]) for e in logs if e["event"] == "speech_criterion_restored"
    ] == [("speech_criterion_restored", "offer", "measured")]
    checks_offer = await _queued(sessions, project, people[0], CHECKS)
    await _route(sessions, project)
    assert await _routing_of(sessions, checks_offer) == (AUTOMATIC, [])


async def test_a_manager_brings_a_criterion_back_and_it_is_judged_afresh(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """`fieldcheck speech restore` closes the return at once (the real clock); the pairs that returned it no
    longer count, and new ones under the bar return it again."""
    project = await _project(sessions)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    people = await _people(sessions)
    today = dt.datetime.now(MOSCOW).date()
    first = today - dt.timedelta(days=3)
    await _audited(sessions, project, people, first, [0, 0, 0, 0, 0])
    await _send(app, sessions, first)
    await manager.skip_to(text("digest-audit-returned", bar="90%", criteria=audited("offer", "0%", 5)))

    env = {**os.environ, "DATABASE_URL": app.settings.database_url, "LOG_LEVEL": "WARNING"}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    listed = run_cli(["speech", "returned", str(project.id)], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "offer: returned" in listed.stdout and "(0% of 5), people decide it" in listed.stdout
    restored = run_cli(["speech", "restore", str(project.id), "offer"], env, tmp_path)
    assert restored.returncode == 0 and "offer: back to the machine" in restored.stdout, restored.stderr
    twice = run_cli(["speech", "restore", str(project.id), "offer"], env, tmp_path)
    assert twice.returncode == 2 and "is not returned to people" in twice.stderr
    [row] = await _returns(sessions)
    assert row.restored_by == "manager" and row.restored_at is not None
    decided = await _queued(sessions, project, people[0], CHECKS)
    await _route(sessions, project)
    assert await _routing_of(sessions, decided) == (AUTOMATIC, [])

    # The next digest does not return it again on the pairs from before (still in its 30 days).
    await _send(app, sessions, first + dt.timedelta(days=1))
    seen = message_text(await manager.skip_to(digest_title(project, first + dt.timedelta(days=1))))
    assert fragment("digest-audit", days=30, pairs=5) in seen
    assert not pattern("digest-audit-returned").search(seen)
    assert len(await _returns(sessions)) == 1

    # Five new audit pairs after the restore, under the bar again: returned again, a second row.
    after = row.restored_at + dt.timedelta(seconds=1)
    day = after.astimezone(MOSCOW).date()
    await _audited(sessions, project, people, day, [0, 0, 1, 1, 1], at=after)
    await _send(app, sessions, day)
    await manager.skip_to(text("digest-audit-returned", bar="90%", criteria=audited("offer", "60%", 5)))
    assert [(r.criterion, r.pairs, r.restored_by) for r in await _returns(sessions)] == [
        ("offer", 5, "manager"),
        ("offer", 5, None),
    ]


async def test_no_audit_block_where_routing_is_off(
    sessions: async_sessionmaker[AsyncSession], app: Runtime
) -> None:
    project = await _project(sessions, {"enabled": True})
    people = await _people(sessions)
    await _audited(sessions, project, people, DAY, [0, 0, 0, 0, 0])
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None
        built = await digest_service.build_digest(session, stored, DAY, now=digest_time(DAY))
    assert built.audit is None and built.figures().audit is None
    shown = rendered(app.i18n, "en", digest_text, built)
    audit_keys = [
        "digest-audit",
        *(f"digest-audit-{k}" for k in ("none", "below", "returned", "restored", "still")),
    ]
    assert not [key for key in audit_keys if pattern(key).search(shown)]
