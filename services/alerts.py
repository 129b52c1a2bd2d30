"""Manager alerts that ask for action: raised once, taken by one manager, resolved with a note.

Delivery (texts and buttons through the outbox) is in handlers/alert_cards.py; this module owns the
states and who may move them, so a forged or late button press is refused here.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import AlertKind, AlertStatus, ManagerAlert, Membership, Role, User
from models.base import utcnow
from services.sql import insert_ignore

REPEAT_AFTER = dt.timedelta(hours=1)
NOTE_MAX_CHARS = 500


class AlertProblem(StrEnum):
    UNKNOWN = "unknown"
    NOT_MANAGER = "not-manager"
    TAKEN = "taken"  # by someone else
    RESOLVED = "resolved"


class AlertError(Exception):
    def __init__(self, problem: AlertProblem, alert: ManagerAlert | None = None) -> None:
        super().__init__(problem.value)
        self.problem, self.alert = problem, alert


async def raise_alert(
    session: AsyncSession,
    project_id: int,
    kind: AlertKind,
    *,
    contact_id: int | None = None,
    survey_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> ManagerAlert | None:
    """The new alert, or None when this survey's alert exists already (a retried job, a double press)."""
    now = utcnow()
    values = {
        "project_id": project_id,
        "kind": kind,
        "contact_id": contact_id,
        "survey_id": survey_id,
        "details": details or {},
        "status": AlertStatus.OPEN,
        "created_at": now,
        "updated_at": now,
    }
    if survey_id is not None:
        if not await insert_ignore(session, ManagerAlert, values, ["survey_id"]):
            return None
        alert: ManagerAlert | None = await session.scalar(
            select(ManagerAlert).where(ManagerAlert.survey_id == survey_id)
        )
        return alert
    alert = ManagerAlert(**values)
    session.add(alert)
    await session.flush()
    return alert


async def may_act(session: AsyncSession, user: User, project_id: int, is_global_admin: bool) -> bool:
    """Active managers of the alert's own project (and global admins); nobody else, whatever the button."""
    if is_global_admin:
        return True
    found = await session.scalar(
        select(Membership.id).where(
            Membership.user_id == user.id,
            Membership.project_id == project_id,
            Membership.role == Role.MANAGER,
            Membership.is_active.is_(True),
        )
    )
    return found is not None


async def _checked(session: AsyncSession, alert_id: int, user: User, is_global_admin: bool) -> ManagerAlert:
    alert = await session.scalar(select(ManagerAlert).where(ManagerAlert.id == alert_id).with_for_update())
    if alert is None:
        raise AlertError(AlertProblem.UNKNOWN)
    if not await may_act(session, user, alert.project_id, is_global_admin):
        raise AlertError(AlertProblem.NOT_MANAGER, alert)
    return alert


async def visible(session: AsyncSession, alert_id: int, user: User, is_global_admin: bool) -> ManagerAlert:
    return await _checked(session, alert_id, user, is_global_admin)


async def take(session: AsyncSession, alert_id: int, user: User, is_global_admin: bool) -> ManagerAlert:
    alert = await _checked(session, alert_id, user, is_global_admin)
    if alert.status == AlertStatus.RESOLVED:
        raise AlertError(AlertProblem.RESOLVED, alert)
    if alert.status == AlertStatus.TAKEN:
        if alert.taken_by_id != user.id:
            raise AlertError(AlertProblem.TAKEN, alert)
        return alert
    alert.status, alert.taken_by_id, alert.taken_at = AlertStatus.TAKEN, user.id, utcnow()
    await session.flush()
    return alert


async def check_resolvable(
    session: AsyncSession, alert_id: int, user: User, is_global_admin: bool
) -> ManagerAlert:
    """Before asking for the note: resolved already, or taken by someone else, is refused."""
    alert = await _checked(session, alert_id, user, is_global_admin)
    if alert.status == AlertStatus.RESOLVED:
        raise AlertError(AlertProblem.RESOLVED, alert)
    if alert.status == AlertStatus.TAKEN and alert.taken_by_id != user.id:
        raise AlertError(AlertProblem.TAKEN, alert)
    return alert


async def resolve(
    session: AsyncSession, alert_id: int, user: User, is_global_admin: bool, note: str
) -> ManagerAlert:
    alert = await check_resolvable(session, alert_id, user, is_global_admin)
    now = utcnow()
    if alert.taken_by_id is None:
        alert.taken_by_id, alert.taken_at = user.id, now
    alert.status, alert.resolved_by_id, alert.resolved_at = AlertStatus.RESOLVED, user.id, now
    alert.resolution_note = note.strip()[:NOTE_MAX_CHARS]
    await session.flush()
    return alert


async def due_for_repeat(session: AsyncSession, now: dt.datetime) -> list[ManagerAlert]:
    """Alerts nobody took within REPEAT_AFTER, not yet repeated: each is repeated once."""
    return list(
        await session.scalars(
            select(ManagerAlert)
            .where(
                ManagerAlert.status == AlertStatus.OPEN,
                ManagerAlert.repeated_at.is_(None),
                ManagerAlert.created_at <= now - REPEAT_AFTER,
            )
            .order_by(ManagerAlert.id)
            .limit(500)
            .with_for_update(skip_locked=True)
        )
    )
