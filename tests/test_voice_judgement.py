"""The self-recording judgement as people meet it: how sure a flag is and why, on the reviewer's card; the
flags' precision and recall from the project's own reviews; a project's calibration refitted from them; and
repeated customers decided on s-normalised scores."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from jobs import review as review_jobs
from models import (
    AnalysisState,
    AnalysisTask,
    Assignment,
    AssignmentStatus,
    Contact,
    FlagKind,
    Project,
    Review,
    Role,
    User,
    Verdict,
    Voiceprint,
    VoiceRole,
)
from models.base import utcnow
from models.payloads import AnalysisEvidence, SelfRecording, flag_details
from models.voice import VoiceFlag
from services.voice import quality
from services.voice.index import COHORT_TOP, MIN_COHORT, Match, VoiceprintCatalog, cohort_stats, snorm
from services.voice.probability import ONE_VOICE_FEATURES, Calibration, for_project, packaged
from telegram_standin import StandIn
from telegram_standin.driver import message_text
from tests.helpers import (
    add_contact,
    cards_of,
    join,
    label,
    pavel_with_contacts,
    run_cli,
    seed_project,
    template,
    text,
)


async def test_sure_and_unsure_flags_read_differently_on_the_card(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path, tmp_path: Path
) -> None:
    """A likely flag states its probability and reason; an unsure one asks the reviewer to listen."""
    project = await seed_project(sessions)
    anna = await join(tg, sessions, project, Role.REVIEWER, 3801, "Anna")
    _, (likely, unsure) = await pavel_with_contacts(
        tg, sessions, project, 2801, 2, audio_dir / "dialogue.ogg", tmp_path / "a"
    )
    async with sessions() as session, session.begin():
        session.add_all(
            [
                VoiceFlag(
                    contact_id=likely,
                    score=0.94,
                    details=SelfRecording(
                        kind=FlagKind.NO_CUSTOMER,
                        confidence="likely",
                        why={"speech": 58.0, "second": 2.0, "voices": 1.0, "separation": 0.4},
                    ),
                ),
                VoiceFlag(
                    contact_id=unsure,
                    score=0.62,
                    details=SelfRecording(
                        kind=FlagKind.CUSTOMER_IS_PROMOTER,
                        confidence="unsure",
                        why={
                            "speech": 40.0,
                            "second": 11.0,
                            "voices": 2.0,
                            "separation": 1.1,
                            "enrol_customer": 0.71,
                            "enrol_promoter": 0.74,
                        },
                    ),
                ),
            ]
        )
        await session.execute(update(Contact).where(Contact.id == likely).values(priority=9))
        await session.execute(update(Contact).where(Contact.id == unsure).values(priority=5))
    await review_jobs.dispatch(app.session_factory, app.i18n)
    await tg.wait_until(lambda: len(cards_of(anna)) == 2, timeout=20)
    first, second = cards_of(anna)
    sure_text, unsure_text = message_text(first), message_text(second)
    assert text("card-title", id=likely, project=project.name) in sure_text
    why_sure = label("why-one-voice-short-second", speech="58", second="2")
    sure = text("card-flag-likely", flag=label("flag-no-customer"), percent="94%", why=why_sure)
    assert sure in sure_text
    # Each kind of line opens with its own icon (⚠️ sure, 🎧 listen), which the other card lacks.
    assert template("card-flag-unsure").split()[0] not in sure_text
    why_unsure = label("why-customer-like-promoter", second="11", customer="0.71", promoter="0.74")
    unsure_line = text(
        "card-flag-unsure", flag=label("flag-customer-is-promoter"), percent="62%", why=why_unsure
    )
    assert unsure_line in unsure_text
    assert template("card-flag-likely").split()[0] not in unsure_text


async def _reviewed(
    session: AsyncSession,
    project: Project,
    promoter: User,
    reviewer: User,
    *,
    verdict: Verdict,
    real_customer: int | None,
    flags: list[tuple[FlagKind, str | None]],
    features: dict[str, float] | None = None,
    undone_first: bool = False,
) -> int:
    """A contact with its audio, analysis evidence, flags and a standing review (optionally preceded by an
    undone one that said the opposite)."""
    contact, audio = await add_contact(session, project.id, promoter.id)
    session.add(
        AnalysisTask(
            audio_id=audio.id,
            state=AnalysisState.DONE,
            evidence=AnalysisEvidence(backend="resemblyzer", features=features)
            if features is not None
            else None,
        )
    )
    for kind, confidence in flags:
        details = flag_details(kind, {"confidence": confidence} if confidence else {})  # as a row stores it
        session.add(VoiceFlag(contact_id=contact.id, score=0.9, details=details))
    assignment = Assignment(contact_id=contact.id, reviewer_id=reviewer.id, status=AssignmentStatus.DONE)
    session.add(assignment)
    await session.flush()
    marks = {} if real_customer is None else {"real_customer": real_customer}
    if undone_first:
        opposite = Verdict.APPROVE if verdict == Verdict.FRAUD else Verdict.FRAUD
        session.add(
            Review(
                assignment_id=assignment.id,
                contact_id=contact.id,
                reviewer_id=reviewer.id,
                verdict=opposite,
                marks={"real_customer": 1 - (real_customer or 0)},
                undone_at=utcnow(),
            )
        )
        await session.flush()
    session.add(
        Review(
            assignment_id=assignment.id,
            contact_id=contact.id,
            reviewer_id=reviewer.id,
            verdict=verdict,
            marks=marks,
        )
    )
    await session.flush()
    return contact.id


async def _people(session: AsyncSession) -> tuple[User, User]:
    promoter, reviewer = User(telegram_id=71, first_name="Pavel"), User(telegram_id=72, first_name="Rita")
    session.add_all([promoter, reviewer])
    await session.flush()
    return promoter, reviewer


async def test_flag_quality_from_seeded_reviews(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Precision and recall computed by hand for a small project (see the comment on each contact)."""
    project = await seed_project(sessions)
    no_customer, repeated = FlagKind.NO_CUSTOMER, FlagKind.REPEATED_CUSTOMER
    async with sessions() as session, session.begin():
        p, r = await _people(session)
        args = {"session": session, "project": project, "promoter": p, "reviewer": r}
        # likely no-customer flags: two confirmed (not a real customer; fraud), one wrong (real customer)
        await _reviewed(**args, verdict=Verdict.REJECT, real_customer=0, flags=[(no_customer, "likely")])
        await _reviewed(**args, verdict=Verdict.FRAUD, real_customer=None, flags=[(no_customer, "likely")])
        await _reviewed(**args, verdict=Verdict.APPROVE, real_customer=1, flags=[(no_customer, "likely")])
        # an unsure one that was right, and one the undone review would have judged the other way
        await _reviewed(**args, verdict=Verdict.REJECT, real_customer=0, flags=[(no_customer, "unsure")])
        await _reviewed(
            **args,
            verdict=Verdict.APPROVE,
            real_customer=1,
            flags=[(no_customer, "unsure")],
            undone_first=True,
        )
        # a self-recording nobody flagged (a miss), and a clean genuine contact
        await _reviewed(**args, verdict=Verdict.REJECT, real_customer=0, flags=[])
        await _reviewed(**args, verdict=Verdict.APPROVE, real_customer=1, flags=[])
        # repeated customer: judged by fraud verdicts only
        await _reviewed(**args, verdict=Verdict.FRAUD, real_customer=1, flags=[(repeated, None)])
        await _reviewed(**args, verdict=Verdict.APPROVE, real_customer=1, flags=[(repeated, None)])

    async with sessions() as session:
        rows = {q.kind: q for q in await quality.flag_quality(session, project.id)}
    # self-recorded contacts per the reviewers: #1, #2, #4, #6 (fraud #8 too: a fraud verdict counts) = 5
    assert rows["no_customer"].flagged == 5 and rows["no_customer"].confirmed == 3
    assert rows["no_customer"].positives == 5 and rows["no_customer"].reviewed == 9
    assert rows["no_customer (likely)"].precision == pytest.approx(2 / 3)
    assert rows["no_customer (unsure)"].precision == pytest.approx(1 / 2)
    assert rows["repeated_customer"].precision == pytest.approx(1 / 2)
    assert rows["repeated_customer"].recall == pytest.approx(1 / 2)  # fraud: #2 and #8


def _cli(tmp_path: Path, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOG_LEVEL": "WARNING", "VOICE_BACKEND": "resemblyzer", "DATABASE_URL": database}
    return run_cli(list(args), env, tmp_path)


async def test_quality_command_and_refit_from_reviews(
    sessions: async_sessionmaker[AsyncSession], migrated_url: str, tmp_path: Path
) -> None:
    """`voice quality` prints the table; `voice eval --from-reviews` refuses too few labels, then fits the
    project's own calibration, which the worker uses from then on."""
    project = await seed_project(sessions)
    rng = np.random.default_rng(3)

    def features(self_recorded: bool) -> dict[str, float]:
        shift = -1.0 if self_recorded else 1.0
        return {name: float(rng.normal(shift, 0.8)) for name in ONE_VOICE_FEATURES}

    async with sessions() as session, session.begin():
        p, r = await _people(session)
        args = {"session": session, "project": project, "promoter": p, "reviewer": r}
        for _ in range(10):
            await _reviewed(
                **args, verdict=Verdict.REJECT, real_customer=0, flags=[(FlagKind.NO_CUSTOMER, "likely")],
                features=features(True),
            )  # fmt: skip
            await _reviewed(
                **args, verdict=Verdict.APPROVE, real_customer=1, flags=[], features=features(False)
            )

    shown = _cli(tmp_path, migrated_url, "voice", "quality", str(project.id))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "no_customer (likely)" in shown.stdout and "100%" in shown.stdout
    assert "over 20 reviewed contacts" in shown.stdout

    refused = _cli(tmp_path, migrated_url, "voice", "eval", "--from-reviews", str(project.id))
    assert refused.returncode == 2
    assert "10 self-recorded and 10 genuine" in refused.stderr and "at least 20 of each" in refused.stderr

    async with sessions() as session, session.begin():
        p = (await session.scalars(select(User).where(User.telegram_id == 71))).one()
        r = (await session.scalars(select(User).where(User.telegram_id == 72))).one()
        args = {"session": session, "project": project, "promoter": p, "reviewer": r}
        for _ in range(12):
            await _reviewed(**args, verdict=Verdict.FRAUD, real_customer=0, flags=[], features=features(True))
            await _reviewed(
                **args, verdict=Verdict.APPROVE, real_customer=1, flags=[], features=features(False)
            )
    fitted = _cli(tmp_path, migrated_url, "voice", "eval", "--from-reviews", str(project.id), "--json")
    assert fitted.returncode == 0, fitted.stderr[-2000:]
    result = json.loads(fitted.stdout.strip().splitlines()[-1])
    assert result["calibration"] == f"project {project.id} reviews: 22 self-recorded, 22 genuine"
    async with sessions() as session:
        stored = await session.get(Project, project.id)
        assert stored is not None
        calibration = for_project("resemblyzer", stored.voice_thresholds)
    assert calibration is not None and calibration.source == result["calibration"]
    genuine = {name: 1.0 for name in ONE_VOICE_FEATURES}
    alone = {name: -1.0 for name in ONE_VOICE_FEATURES}
    assert calibration.self_recorded.probability(alone) > 0.9
    assert calibration.self_recorded.probability(genuine) < 0.1


def test_packaged_calibration_is_there_and_monotone() -> None:
    """The shipped Resemblyzer calibration loads, and a plainly split recording is judged less likely
    self-recorded than one that does not split at all."""
    calibration = packaged("resemblyzer")
    assert isinstance(calibration, Calibration) and "dev split" in calibration.source
    split = {"gap_z": 2.5, "silhouette": 0.45, "minor_log_seconds": 2.5, "minor_share": 0.35, "between": 0.55}
    alone = {"gap_z": 0.3, "silhouette": 0.05, "minor_log_seconds": 0.7, "minor_share": 0.05, "between": 0.8}
    assert calibration.one_voice.probability(split) < 0.5 < calibration.one_voice.probability(alone)


async def test_repeats_are_decided_on_normalised_scores(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Below MIN_COHORT voiceprints the raw cosine decides; above, adaptive s-norm against the cohort, with
    the score computed as the formula says."""
    project = await seed_project(sessions)
    rng = np.random.default_rng(11)

    def unit(vector: np.ndarray) -> np.ndarray:
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    # A "channel" direction every voiceprint shares (one kind of phone): raw cosines are all high.
    channel = unit(rng.standard_normal(64))
    customer = unit(rng.standard_normal(64))

    def voiceprint(core: np.ndarray) -> np.ndarray:
        return unit(2.0 * channel + core + 0.3 * unit(rng.standard_normal(64)))

    async with sessions() as session, session.begin():
        promoter = User(telegram_id=81, first_name="Pavel")
        session.add(promoter)
        await session.flush()
        for n in range(MIN_COHORT + 30):
            contact, audio = await add_contact(session, project.id, promoter.id)
            core = customer if n < 3 else unit(rng.standard_normal(64))
            session.add(
                Voiceprint(
                    project_id=project.id,
                    audio_id=audio.id,
                    contact_id=contact.id,
                    role=VoiceRole.CUSTOMER,
                    backend="test",
                    dim=64,
                    vector=voiceprint(core).tobytes(),
                    speech_seconds=4.0,
                )
            )
    query = voiceprint(customer)

    async def search(session: AsyncSession, raw_threshold: float) -> tuple[list[Match], bool]:
        """The customer voices like `query`, through a catalog of its own (each builds its own index)."""
        return await VoiceprintCatalog().search_normalised(
            session,
            project_id=project.id,
            backend="test",
            role=VoiceRole.CUSTOMER,
            query=query,
            threshold=3.0,
            raw_threshold=raw_threshold,
        )

    async with sessions() as session:
        matches, normalised = await search(session, raw_threshold=0.99)
        rows = list(await session.scalars(select(Voiceprint).order_by(Voiceprint.id)))
    vectors = np.stack([np.frombuffer(row.vector, dtype=np.float32) for row in rows])
    raw = vectors @ query
    assert raw.min() > 0.6 and raw.max() < 0.99  # the shared channel lifts every raw score
    assert normalised and sorted(m.contact_id for m in matches) == sorted(r.contact_id for r in rows[:3])
    best = matches[0]
    index = next(i for i, row in enumerate(rows) if row.id == best.voiceprint_id)
    own = np.delete(vectors @ vectors[index], index)
    expected = snorm(
        float(raw[index]), cohort_stats(list(raw), COHORT_TOP), cohort_stats(list(own), COHORT_TOP)
    )
    assert best.normalised == pytest.approx(expected, abs=1e-3)

    async with sessions() as session:
        await session.execute(
            update(Voiceprint).where(Voiceprint.id > rows[MIN_COHORT - 2].id).values(backend="x")
        )
        found, was_normalised = await search(session, raw_threshold=0.95)
        await session.rollback()
    assert not was_normalised  # 49 voiceprints: too few for a cohort
    assert all(m.score >= 0.95 and m.normalised is None for m in found)


def test_when_reviews_turn_into_labels() -> None:
    label = quality.Label(1, fraud=False, customer_real=None)
    assert not label.self_recorded
    assert quality.Label(2, fraud=True, customer_real=True).self_recorded
    assert quality.Label(3, fraud=False, customer_real=False).self_recorded
