"""Managers hear about a repeated customer voice once per cluster, however many contacts join it later.

The voice worker only stores flags (it has no bot); this job, in the bot's scheduler, turns new
repeated-voice clusters into alerts through the outbox and marks every flag of an alerted cluster.
"""

from __future__ import annotations

import datetime as dt

import structlog
from aiogram.utils.i18n import I18n
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Contact, FlagKind, Project, VoiceFlag
from models.base import utcnow
from models.payloads import RepeatedVoice
from services.alerts import AlertRequest
from telegram_ui.alert_cards import raise_and_send

log = structlog.get_logger(__name__)
SHOWN_CONTACTS = 10


async def alert_repeated_voices(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, now: dt.datetime | None = None
) -> int:
    """Returns how many clusters were alerted."""
    now = now or utcnow()
    alerted = 0
    async with session_factory() as session, session.begin():
        pending = (
            await session.execute(
                select(Contact.project_id, VoiceFlag.cluster_key)
                .join(Contact, Contact.id == VoiceFlag.contact_id)
                .where(
                    VoiceFlag.kind == FlagKind.REPEATED_CUSTOMER,
                    VoiceFlag.alerted.is_(False),
                    VoiceFlag.cluster_key.is_not(None),
                )
                .distinct()
            )
        ).all()
        for project_id, key in pending:
            flags = list(
                await session.scalars(
                    select(VoiceFlag)
                    .join(Contact, Contact.id == VoiceFlag.contact_id)
                    .where(
                        Contact.project_id == project_id,
                        VoiceFlag.kind == FlagKind.REPEATED_CUSTOMER,
                        VoiceFlag.cluster_key == key,
                    )
                    .order_by(VoiceFlag.id)
                )
            )
            if not any(flag.alerted for flag in flags):
                project = await session.get(Project, project_id)
                assert project is not None
                await _send(session, i18n, project, key, flags)
                alerted += 1
            await session.execute(
                update(VoiceFlag).where(VoiceFlag.id.in_([flag.id for flag in flags])).values(alerted=True)
            )
    if alerted:
        log.info("repeated_voice_alerts", clusters=alerted)
    return alerted


async def _send(
    session: AsyncSession, i18n: I18n, project: Project, key: str, flags: list[VoiceFlag]
) -> None:
    contact_ids = sorted({f.contact_id for f in flags} | {c for f in flags for c in f.matched_contact_ids})
    promoters = set(await session.scalars(select(Contact.promoter_id).where(Contact.id.in_(contact_ids))))
    shown = ", ".join(f"#{cid}" for cid in contact_ids[:SHOWN_CONTACTS])
    if len(contact_ids) > SHOWN_CONTACTS:
        shown += " …"
    await raise_and_send(
        session,
        i18n,
        AlertRequest(
            project.id,
            RepeatedVoice(count=len(contact_ids), promoters=len(promoters), contacts=shown),
            contact_ids[-1],  # the latest: "Open contact" plays the voice that made the cluster
            dedupe_key=f"voice-cluster:{project.id}:{key}",
        ),
    )
