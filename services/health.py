"""Health as an operator needs it: can the database be reached, is anything waiting too long to be sent
or handled. Served at /healthz (webhook mode on WEBHOOK_PORT, polling mode on HEALTH_PORT: bot/app.py, which
answers 503 "ready": false while the process still waits for its database) and by `fieldcheck health`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import AnalysisState, AnalysisTask, InboxUpdate, OutboxMessage, OutboxStatus
from models.base import utcnow

OUTBOX_LATE = dt.timedelta(minutes=10)  # a message due this long ago and still unsent means trouble
INBOX_LATE = dt.timedelta(minutes=5)


async def report(session: AsyncSession, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    pending = OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING])
    outbox_pending = int(
        await session.scalar(select(func.count()).select_from(OutboxMessage).where(pending)) or 0
    )
    oldest_due = await session.scalar(select(func.min(OutboxMessage.not_before)).where(pending))
    outbox_failed = int(
        await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.status == OutboxStatus.FAILED,
                OutboxMessage.updated_at >= now - dt.timedelta(days=1),
            )
        )
        or 0
    )
    inbox_pending = int(await session.scalar(select(func.count()).select_from(InboxUpdate)) or 0)
    oldest_inbox = await session.scalar(select(func.min(InboxUpdate.received_at)))
    analysis_backlog = int(
        await session.scalar(
            select(func.count()).select_from(AnalysisTask).where(AnalysisTask.state == AnalysisState.PENDING)
        )
        or 0
    )
    problems = []
    if oldest_due is not None and now - oldest_due > OUTBOX_LATE:
        problems.append("outbox messages overdue")
    if oldest_inbox is not None and now - oldest_inbox > INBOX_LATE:
        problems.append("updates waiting in the inbox")
    return {
        "ok": not problems,
        "problems": problems,
        "database": "reachable",
        "outbox_pending": outbox_pending,
        "outbox_oldest_due_seconds": round((now - oldest_due).total_seconds()) if oldest_due else 0,
        "outbox_failed_last_day": outbox_failed,
        "inbox_pending": inbox_pending,
        "analysis_backlog": analysis_backlog,
    }
