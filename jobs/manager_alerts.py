"""Alerts about the operation that no single update raises: voice analysis falling behind, and a reviewer
on shift sitting on open cards. Each is raised once per dedupe key (a backlog at most once per six hours
while it lasts, an idle reviewer once a day) and goes out like every alert, with its buttons."""

from __future__ import annotations

import datetime as dt

import structlog
from aiogram.utils.i18n import I18n
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Project
from models.base import utcnow
from models.payloads import AnalysisBacklog, ReviewerIdle
from services import alerts
from services.alerts import AlertRequest
from telegram_ui.alert_cards import raise_and_send

log = structlog.get_logger(__name__)


async def alert_operations(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, now: dt.datetime | None = None
) -> int:
    """Returns how many alerts were raised."""
    now = now or utcnow()
    raised = 0
    async with session_factory() as session:
        project_ids = list(await session.scalars(select(Project.id).where(Project.is_active.is_(True))))
    for project_id in project_ids:
        async with session_factory() as session, session.begin():
            project = await session.get(Project, project_id)
            assert project is not None
            waiting = await alerts.analysis_backlog(session, project, now)
            if project.backlog_alert_size > 0 and waiting >= project.backlog_alert_size:
                window = f"{now:%Y%m%d}-{now.hour // 6}"
                alert = await raise_and_send(
                    session,
                    i18n,
                    AlertRequest(
                        project.id,
                        AnalysisBacklog(count=waiting, minutes=project.analysis_wait_minutes),
                        dedupe_key=f"backlog:{project.id}:{window}",
                    ),
                )
                raised += alert is not None
            if project.idle_alert_minutes > 0:
                for reviewer, open_cards in await alerts.idle_reviewers(session, project, now):
                    alert = await raise_and_send(
                        session,
                        i18n,
                        AlertRequest(
                            project.id,
                            ReviewerIdle(
                                reviewer=reviewer.display_name,
                                open=open_cards,
                                minutes=project.idle_alert_minutes,
                            ),
                            dedupe_key=f"idle:{project.id}:{reviewer.id}:{now:%Y%m%d}",
                        ),
                    )
                    raised += alert is not None
    if raised:
        log.info("operation_alerts", raised=raised)
    return raised
