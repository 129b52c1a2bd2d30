"""Retention and erasure (issue #13): recordings, voiceprints, personal answers and customers' traces go
after the project's retention period or on a person's request; contacts, verdicts and billing stay."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.messages import SendText
from infra.outbox import enqueue
from infra.storage import LocalAudioStore
from jobs import housekeeping
from models import (
    Audio,
    AudioKind,
    Contact,
    ContactStatus,
    FsmState,
    Membership,
    NpsAnswer,
    NpsCategory,
    NpsScale,
    NpsSurvey,
    OutboxMessage,
    Project,
    Role,
    User,
    Verdict,
    Voiceprint,
    crypto,
)
from models.base import utcnow
from services import privacy
from tests.conftest import DATA_KEY
from tests.helpers import add_users, count_rows, local_redis, seed_project

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
ANSWERS = {"product": "coffee", "bought": True, "phone": {"consent": True, "number": "+79001234567"}}


@pytest.fixture
def store(tmp_path: Path) -> LocalAudioStore:
    """Where the tests' recordings are kept (a folder of the test's own)."""
    return LocalAudioStore(tmp_path / "audio")


async def _contact(
    session: AsyncSession,
    store: LocalAudioStore,
    project: Project,
    promoter: User,
    age_days: int,
    sound: bytes,
) -> Contact:
    """An approved contact with its recording on disk, a voiceprint and an answered customer survey."""
    contact = Contact(
        project_id=project.id,
        promoter_id=promoter.id,
        form_answers=dict(ANSWERS),
        submitted_at=NOW - dt.timedelta(days=age_days),
        status=ContactStatus.FINAL,
        final_verdict=Verdict.APPROVE,
    )
    session.add(contact)
    await session.flush()
    audio = Audio(
        contact_id=contact.id,
        owner_id=promoter.id,
        storage_key=store.put(sound, ".ogg"),
        sha256=f"{contact.id:064d}",
    )
    session.add(audio)
    await session.flush()
    vector = np.ones(4, dtype=np.float32) / 2
    session.add(
        Voiceprint(
            project_id=project.id,
            audio_id=audio.id,
            contact_id=contact.id,
            backend="t",
            dim=4,
            vector=vector.tobytes(),
        )
    )
    survey = NpsSurvey(
        contact_id=contact.id,
        project_id=project.id,
        token=f"t{contact.id}",
        scale=NpsScale.ZERO_TO_TEN,
        customer_telegram_id=777000 + contact.id,
    )
    session.add(survey)
    await session.flush()
    session.add(
        NpsAnswer(
            survey_id=survey.id, score=3, category=NpsCategory.DETRACTOR, follow_up="Call me, I am Ivan"
        )
    )
    return contact


async def test_retention_purges_old_recordings_and_personal_answers_and_keeps_the_contacts(
    sessions: async_sessionmaker[AsyncSession], store: LocalAudioStore
) -> None:
    project = await seed_project(sessions, retention_days=30)
    async with sessions() as session, session.begin():
        [promoter] = await add_users(session, (5001, "Pavel"))
        old = await _contact(session, store, project, promoter, 40, b"old voice")
        recent = await _contact(session, store, project, promoter, 5, b"shared voice")
        resent_old = await _contact(session, store, project, promoter, 45, b"shared voice")  # same bytes
        old_key = (await session.scalar(select(Audio.storage_key).where(Audio.contact_id == old.id))) or ""
        shared_key = (
            await session.scalar(select(Audio.storage_key).where(Audio.contact_id == recent.id))
        ) or ""

    erased = await housekeeping.purge_personal_data(sessions, store, now=NOW)
    assert (erased.contacts_anonymised, erased.recordings, erased.voiceprints) == (2, 2, 2)
    assert (
        erased.files == 1 and not store.exists(old_key) and store.exists(shared_key)
    )  # still the recent one's
    assert erased.customer_answers == 4  # two surveys' customer ids and two written answers
    async with sessions() as session:
        kept = {c.id: c for c in (await session.scalars(select(Contact))).all()}
        assert len(kept) == 3  # the contacts stay: billing and reports of past months do not change
        for purged_id in (old.id, resent_old.id):
            assert kept[purged_id].form_answers == {"product": "coffee", "bought": True}
            assert kept[purged_id].personal_data_purged_at is not None
            assert kept[purged_id].final_verdict == Verdict.APPROVE
        assert kept[recent.id].form_answers == ANSWERS and kept[recent.id].personal_data_purged_at is None
        surveys = {s.contact_id: s for s in (await session.scalars(select(NpsSurvey))).all()}
        assert (
            surveys[old.id].customer_telegram_id is None
            and surveys[recent.id].customer_telegram_id is not None
        )
        follow_ups = sorted((a.follow_up or "") for a in (await session.scalars(select(NpsAnswer))).all())
        assert follow_ups == ["", "", "Call me, I am Ivan"]
    assert await count_rows(sessions, Audio) == 1 and await count_rows(sessions, Voiceprint) == 1
    again = await housekeeping.purge_personal_data(sessions, store, now=NOW)
    assert again.contacts_anonymised == 0 and again.files == 0


async def test_forget_erases_one_person_and_reports_what_went(
    sessions: async_sessionmaker[AsyncSession], store: LocalAudioStore
) -> None:
    project = await seed_project(sessions)
    async with sessions() as session, session.begin():
        pavel = User(telegram_id=5002, first_name="Pavel", last_name="Petrov", username="pavel_p")
        olga = User(telegram_id=5003, first_name="Olga")
        session.add_all([pavel, olga])
        await session.flush()
        session.add(Membership(user_id=pavel.id, project_id=project.id, role=Role.PROMOTER))
        mine = await _contact(session, store, project, pavel, 1, b"pavel's dialogue")
        hers = await _contact(session, store, project, olga, 1, b"olga's dialogue")
        session.add(
            Audio(
                owner_id=pavel.id,
                kind=AudioKind.ENROLMENT,
                storage_key=store.put(b"pavel enrol"),
                sha256="e" * 64,
            )
        )
        session.add(
            FsmState(
                key=f"fsm:1:{pavel.telegram_id}:{pavel.telegram_id}:default:default", state="Intake:answering"
            )
        )
        await enqueue(session, pavel.telegram_id, SendText(text="feedback"), not_before=utcnow())
        customer_id = 777000 + hers.id  # Olga's customer asks to be forgotten too

    async with sessions() as session, session.begin():
        erased = await privacy.forget_person(session, store, 5002)
    assert (erased.people, erased.recordings, erased.files, erased.memberships) == (1, 2, 2, 1)
    assert (erased.pending_messages, erased.conversation_states, erased.contacts_anonymised) == (1, 1, 1)
    assert "recordings: 2" in erased.lines()
    async with sessions() as session, session.begin():
        customer = await privacy.forget_person(session, store, customer_id)
    assert customer.customer_answers == 2 and customer.people == 0
    async with sessions() as session:
        person = await session.get(User, pavel.id)
        assert person is not None
        assert (person.first_name, person.last_name, person.username, person.telegram_id) == (
            "",
            None,
            None,
            -pavel.id,
        )
        contact = await session.get(Contact, mine.id)
        assert (
            contact is not None
            and "phone" not in contact.form_answers
            and contact.final_verdict == Verdict.APPROVE
        )
        survey = await session.scalar(select(NpsSurvey).where(NpsSurvey.contact_id == hers.id))
        assert survey is not None and survey.customer_telegram_id is None
        olga_audio = await session.scalar(select(Audio).where(Audio.owner_id == olga.id))
        assert olga_audio is not None and store.exists(olga_audio.storage_key)  # nobody else is touched
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


async def test_customers_written_answers_are_sealed_at_rest_and_keys_rotate(
    sessions: async_sessionmaker[AsyncSession], store: LocalAudioStore
) -> None:
    project = await seed_project(sessions)
    async with sessions() as session, session.begin():
        [promoter] = await add_users(session, (5004, "Pavel"))
        await _contact(session, store, project, promoter, 1, b"voice")  # follow-up "Call me, I am Ivan"
    async with sessions() as session:
        raw = await session.scalar(text("SELECT follow_up FROM nps_answer"))
        assert raw.startswith("fc1:") and "Ivan" not in raw  # what the database (and its backups) hold
        assert await session.scalar(select(NpsAnswer.follow_up)) == "Call me, I am Ivan"
    # Rotation: a new key first, the old one kept: old values still open, new ones use the new key.
    new_key = crypto.generate_key()
    try:
        crypto.configure([new_key, DATA_KEY])
        assert crypto.reveal(raw) == "Call me, I am Ivan"
        crypto.configure([new_key])
        with pytest.raises(crypto.DataKeyError):
            crypto.reveal(raw)
        assert crypto.reveal("typed before encryption existed") == "typed before encryption existed"
    finally:
        crypto.configure([DATA_KEY])


def test_a_key_file_is_made_once_and_kept_private(tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "data.key"
    first = crypto.keys_from(None, key_file)
    assert crypto.keys_from(None, key_file) == first and key_file.stat().st_mode & 0o777 == 0o600
    assert crypto.keys_from("k1, k2", key_file) == ["k1", "k2"]


async def test_forget_clears_conversations_kept_in_redis() -> None:
    client = await local_redis("redis://127.0.0.1:6379/14")
    try:
        await client.set("fsm:123:5005:5005:default:default:state", "Intake:answering")
        await client.set("fsm:123:5005:5005:default:default:data", "{}")
        await client.set("fsm:123:6006:6006:default:default:state", "Intake:answering")  # someone else
        assert await privacy.forget_redis_states("redis://127.0.0.1:6379/14", 5005) == 2
        assert await client.exists("fsm:123:6006:6006:default:default:state") == 1
    finally:
        await client.flushdb()
        await client.aclose()
