"""The managers' daily digest, once per project per day at the project's own digest time.

The job runs every minute and at start-up: a digest missed while the service was down goes out on start,
marked late. The digest is built through a read-only session (it reads for seconds on a big project and
must hold up no writer); then the digest log row and the outbox messages commit together in one short
transaction, so two processes or a restart never send the same day twice. The chart is put in the blob
store first (content-addressed, so an idempotent write), and the queued message carries its key: whichever
machine's sender sends it finds it there. The key names the project and the day (`chart_suffix`), so only
that one digest's messages share it: the sender removes it once none of them is left to send
(jobs/outbox.py), and a process that lost the day to another removes the charts it drew for nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import structlog
from aiogram.utils.i18n import I18n
from sqlalchemy import select

from infra import outbox
from infra.db import Database
from infra.storage import AudioStore
from models import OutboxStatus, Project
from models.base import utcnow
from services import automatic, digest, people
from telegram_ui import notify
from telegram_ui.cards import rendered
from telegram_ui.digest_cards import chart_labels, digest_keyboard, digest_text

log = structlog.get_logger(__name__)


def chart_suffix(project_id: int, day: dt.date) -> str:
    """The end of a digest chart's key in the blob store: content-addressed, and one project's one day, so
    no other digest's messages ever carry (and keep, or lose) the same chart."""
    return f"-{project_id}-{day.isoformat()}.png"


async def _drop_unqueued_charts(db: Database, chart_store: AudioStore, keys: set[str]) -> None:
    """Charts drawn by a process that lost the day: those no queued message carries (the winner's drew the
    same bytes, and keeps them, unless its drawing differed) leave the store."""
    async with db.read_session() as reading:
        carried = await outbox.charts_in_use(reading, keys, statuses=list(OutboxStatus))
    for key in sorted(keys - carried):
        await asyncio.to_thread(chart_store.delete, key)


async def send_digests(
    db: Database,
    i18n: I18n,
    chart_store: AudioStore,
    now: dt.datetime | None = None,
) -> int:
    """Returns how many project digests were queued."""
    now = now or utcnow()
    async with db.sessions() as session:
        project_ids = list(await session.scalars(select(Project.id).where(Project.is_active.is_(True))))
    sent = 0
    for project_id in project_ids:
        # Built through a read-only session: seconds of reading on a big project, holding up no writer
        # (on SQLite a transaction here holds the write lock). Then one short transaction claims the day
        # and queues the messages; a process that claimed it first wins, and this one sends nothing.
        async with db.read_session() as reading:
            project = await reading.get(Project, project_id)
            assert project is not None
            due = digest.due_day(project, now)
            if due is None or await digest.already_sent(reading, project.id, due[0]):
                continue
            chats = await people.manager_chats(reading, project)
            if not chats:
                continue
            report = await digest.build_digest(reading, project, due[0], late=due[1], now=now)
        messages = []
        for chat_id, locale in chats:
            labels = rendered(i18n, locale, chart_labels)
            png = await asyncio.to_thread(digest.chart_png, report, labels)
            chart_key = await asyncio.to_thread(chart_store.put, png, chart_suffix(project.id, report.day))
            text = rendered(i18n, locale, digest_text, report)
            keyboard = rendered(i18n, locale, digest_keyboard, project.id, report.day)
            messages.append((chat_id, chart_key, text, keyboard))
        async with db.sessions() as session, session.begin():
            claimed = await digest.claim_day(session, report, [chat for chat, _ in chats])
            if claimed:
                if report.audit is not None and report.audit.changes:
                    # Criteria handed back to people (or back to the machine) with the digest that says so.
                    await automatic.record_changes(session, project.id, report.audit.changes, now)
                for chat_id, chart_key, text, keyboard in messages:
                    await notify.queue_digest(
                        session,
                        chat_id,
                        project.id,
                        report.day,
                        chart_key=chart_key,
                        text=text,
                        keyboard=keyboard,
                    )
        if not claimed:  # another process got there first
            await _drop_unqueued_charts(db, chart_store, {key for _, key, _, _ in messages})
            continue
        sent += 1
        log.info("digest_queued", project_id=project.id, day=report.day.isoformat(), late=report.late)
    return sent
