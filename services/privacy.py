"""Personal data, kept only as long as it is needed: retention per project, and erasure of one person.

What is personal here: recordings (voices) and the voiceprints made from them, the free-text and phone
answers of a contact's form, customers' Telegram ids and written answers, and a member's own name and id.
What stays after a purge: the contact itself with its verdict, score, promoter and the form's choice
answers (the store among them), so billing, reports and digests of past months do not change.

Files are deleted inside the transaction that removes their rows, before it commits: if the commit then
fails, the rows point at missing files and the next run removes them; the other order could leave a
recording on disk with no row left to find it. A file still referenced by another recording (the same
bytes sent twice) stays.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.storage import AudioStore
from models import (
    AnalysisTask,
    Audio,
    ClientSurvey,
    Contact,
    FsmState,
    InboxUpdate,
    Membership,
    NpsAnswer,
    NpsSurvey,
    OutboxMessage,
    OutboxStatus,
    Project,
    User,
    Voiceprint,
)
from models.base import utcnow
from services.forms import DEFAULT_FORM, parse_form

log = structlog.get_logger(__name__)
PERSONAL_TYPES = {"text", "phone"}  # free text may name anyone; a phone number is a person
PURGE_BATCH = 500  # contacts per transaction


@dataclass
class Erased:
    recordings: int = 0
    files: int = 0
    voiceprints: int = 0
    contacts_anonymised: int = 0
    customer_answers: int = 0
    people: int = 0
    memberships: int = 0
    pending_messages: int = 0
    conversation_states: int = 0

    def __iadd__(self, other: Erased) -> Erased:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def lines(self) -> list[str]:
        return [f"{f.name.replace('_', ' ')}: {getattr(self, f.name)}" for f in fields(self)]


def _personal_keys(project: Project) -> set[str]:
    form = parse_form(project.form_schema or DEFAULT_FORM)
    return {q.key for q in form.questions if q.type in PERSONAL_TYPES}


async def _erase_recordings(session: AsyncSession, store: AudioStore, audio_ids: list[int]) -> Erased:
    erased = Erased()
    if not audio_ids:
        return erased
    keys = set((await session.scalars(select(Audio.storage_key).where(Audio.id.in_(audio_ids)))).all())
    # The notes with long pauses cut (services.pauses) are the same voices: erased with their recording,
    # unless the same bytes belong to a recording that is kept (their shortened note is the same file).
    shortened = (
        await session.execute(
            select(Audio.storage_key, AnalysisTask.evidence)
            .join(AnalysisTask, AnalysisTask.audio_id == Audio.id)
            .where(Audio.id.in_(audio_ids), AnalysisTask.evidence.is_not(None))
        )
    ).all()
    erased.voiceprints = (
        await session.execute(delete(Voiceprint).where(Voiceprint.audio_id.in_(audio_ids)))
    ).rowcount  # type: ignore[attr-defined]
    erased.recordings = (await session.execute(delete(Audio).where(Audio.id.in_(audio_ids)))).rowcount  # type: ignore[attr-defined]
    kept = {
        key
        for key in keys
        if await session.scalar(select(func.count()).select_from(Audio).where(Audio.storage_key == key))
    }  # the same bytes belong to a recording that is kept
    keys |= {e.shortened.key for key, e in shortened if e and e.shortened and key not in kept}
    for key in sorted(keys - kept):
        if store.delete(key):
            erased.files += 1
    return erased


def _strip(answers: dict[str, object], personal: set[str]) -> dict[str, object]:
    return {key: value for key, value in answers.items() if key not in personal}


async def purge_expired(
    session: AsyncSession, store: AudioStore, *, now: dt.datetime | None = None
) -> Erased:
    """One batch per project of contacts older than the project's retention: their recordings, voiceprints,
    personal answers and customers' traces. Run until it returns nothing (the scheduler runs it hourly)."""
    now = now or utcnow()
    total = Erased()
    for project in (await session.scalars(select(Project))).all():
        cutoff = now - dt.timedelta(days=project.retention_days)
        contacts = (
            await session.scalars(
                select(Contact)
                .where(
                    Contact.project_id == project.id,
                    Contact.submitted_at < cutoff,
                    Contact.personal_data_purged_at.is_(None),
                )
                .order_by(Contact.id)
                .limit(PURGE_BATCH)
            )
        ).all()
        if not contacts:
            continue
        ids = [c.id for c in contacts]
        audio_ids = list((await session.scalars(select(Audio.id).where(Audio.contact_id.in_(ids)))).all())
        erased = await _erase_recordings(session, store, audio_ids)
        personal = _personal_keys(project)
        for contact in contacts:
            contact.form_answers = _strip(contact.form_answers, personal)
            contact.personal_data_purged_at = now
        erased.contacts_anonymised = len(contacts)
        erased.customer_answers = await _forget_surveys(session, NpsSurvey.contact_id.in_(ids))
        await session.flush()
        log.info(
            "personal_data_purged", project=project.id, retention_days=project.retention_days, **vars(erased)
        )
        total += erased
    return total


async def _forget_surveys(session: AsyncSession, where: object) -> int:
    surveys = list((await session.scalars(select(NpsSurvey.id).where(where))).all())  # type: ignore[arg-type]
    if not surveys:
        return 0
    await session.execute(
        update(NpsSurvey).where(NpsSurvey.id.in_(surveys)).values(customer_telegram_id=None)
    )
    answered = await session.execute(
        update(NpsAnswer)
        .where(NpsAnswer.survey_id.in_(surveys), NpsAnswer.follow_up.is_not(None))
        .values(follow_up=None)
    )
    return len(surveys) + int(answered.rowcount)  # type: ignore[attr-defined]


def _sender(payload: dict[str, Any]) -> int | None:
    for kind in ("message", "edited_message", "callback_query"):
        if isinstance(payload.get(kind), dict):
            source: dict[str, Any] = payload[kind]
            sender: dict[str, Any] = (
                source.get("from") or source.get("from_user") or {}
            )  # Bot API, model_dump
            return int(sender["id"]) if "id" in sender else None
    return None


async def forget_person(session: AsyncSession, store: AudioStore, telegram_id: int) -> Erased:
    """Erase one person on request: as a customer (ids and written answers), and as a member (recordings,
    voiceprints, personal answers of their contacts, name, Telegram id, roles, pending messages, half-filled
    conversations). Their contacts stay, anonymous, for the clients' billing."""
    erased = Erased()
    erased.customer_answers = await _forget_surveys(session, NpsSurvey.customer_telegram_id == telegram_id)
    user = await session.scalar(select(User).where(User.telegram_id == telegram_id))
    pending = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.chat_id == telegram_id, OutboxMessage.status == OutboxStatus.PENDING
        )
    )
    erased.pending_messages = int(pending.rowcount)  # type: ignore[attr-defined]
    states = await session.execute(delete(FsmState).where(FsmState.key.like(f"%:{telegram_id}:%")))
    erased.conversation_states = int(states.rowcount)  # type: ignore[attr-defined]
    for row in (await session.scalars(select(InboxUpdate))).all():  # waiting updates carry their messages
        if _sender(row.payload) == telegram_id:
            await session.delete(row)
    if user is None:
        return erased
    audio_ids = list((await session.scalars(select(Audio.id).where(Audio.owner_id == user.id))).all())
    erased += await _erase_recordings(session, store, audio_ids)
    extra = await session.execute(delete(Voiceprint).where(Voiceprint.user_id == user.id))
    erased.voiceprints += int(extra.rowcount)  # type: ignore[attr-defined]
    projects = {p.id: p for p in (await session.scalars(select(Project))).all()}
    for contact in (await session.scalars(select(Contact).where(Contact.promoter_id == user.id))).all():
        contact.form_answers = _strip(contact.form_answers, _personal_keys(projects[contact.project_id]))
        contact.personal_data_purged_at = contact.personal_data_purged_at or utcnow()
        erased.contacts_anonymised += 1
    client = await session.execute(
        update(ClientSurvey).where(ClientSurvey.user_id == user.id).values(follow_up=None)
    )
    erased.customer_answers += int(client.rowcount)  # type: ignore[attr-defined]
    roles = await session.execute(delete(Membership).where(Membership.user_id == user.id))
    erased.memberships = int(roles.rowcount)  # type: ignore[attr-defined]
    user.first_name, user.last_name, user.username, user.locale = "", None, None, None
    user.telegram_id = -user.id  # unique, and no Telegram account has a negative id
    user.is_blocked = True
    erased.people = 1
    await session.flush()
    log.info("person_forgotten", user=user.id, **vars(erased))
    return erased


async def forget_redis_states(redis_url: str, telegram_id: int) -> int:
    """Half-filled conversations kept in Redis (REDIS_URL) rather than the database: aiogram's keys name the
    chat and the user (fsm:<bot>:<chat>:<user>:...)."""
    from redis.asyncio import Redis  # noqa: PLC0415  redis: only with REDIS_URL

    client = Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(f"fsm:*:{telegram_id}:*")]
        keys += [k async for k in client.scan_iter(f"fsm:*:{telegram_id}") if k not in keys]
        return int(await client.delete(*keys)) if keys else 0
    finally:
        await client.aclose()
