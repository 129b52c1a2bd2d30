"""Manager alerts that ask for action: raised once, taken by one manager, resolved with a note.

Delivery (texts and buttons through the outbox) is in telegram_ui/alert_cards.py; this module owns the
states and who may move them, so a forged or late button press is refused here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.sql import insert_ignore
from models import (
    AlertKind,
    AlertStatus,
    AnalysisState,
    AnalysisTask,
    Assignment,
    AssignmentStatus,
    Audio,
    Contact,
    ManagerAlert,
    Membership,
    Project,
    Review,
    Role,
    User,
    Verdict,
)
from models.base import utcnow
from models.payloads import AlertDetails
from services.users import active_in

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


@dataclass(frozen=True)
class AlertRequest:
    """An alert a use case asks for. Services return these; telegram_ui.alert_cards.raise_and_send alone
    raises one and queues its copies to the managers, so no alert is stored without being sent."""

    project_id: int
    details: AlertDetails
    contact_id: int | None = None
    survey_id: int | None = None  # a customer's survey: one alert per survey
    dedupe_key: str | None = None  # a job's alert: one per key however often the job runs


@dataclass(frozen=True)
class AlertView:
    """What an alert's message shows, read once from the database: the renderers
    (telegram_ui.alert_cards) take this, never a session or a row."""

    id: int
    kind: AlertKind
    status: AlertStatus
    contact_id: int | None
    project_name: str
    details: AlertDetails
    taker: str | None  # display names, None where nobody took or resolved it
    resolver: str | None
    resolution_note: str | None


async def alert_view(session: AsyncSession, alert: ManagerAlert) -> AlertView:
    project = await session.get(Project, alert.project_id)
    assert project is not None

    async def name(user_id: int | None) -> str | None:
        user = await session.get(User, user_id) if user_id else None
        return user.display_name if user else None

    return AlertView(
        id=alert.id,
        kind=alert.kind,
        status=alert.status,
        contact_id=alert.contact_id,
        project_name=project.name,
        details=alert.details,
        taker=await name(alert.taken_by_id),
        resolver=await name(alert.resolved_by_id),
        resolution_note=alert.resolution_note,
    )


async def raise_alert(session: AsyncSession, request: AlertRequest) -> ManagerAlert | None:
    """The new alert (its kind is its details'), or None when it exists already (a retried job, a double
    press: the same survey or the same dedupe key) or when the project's managers muted this kind.
    Called only by telegram_ui.alert_cards.raise_and_send (tests/test_layers.py)."""
    project = await session.get(Project, request.project_id)
    details = request.details
    if project is not None and details.kind.value in (project.muted_alerts or []):
        return None
    now = utcnow()
    values = {
        "project_id": request.project_id,
        "kind": details.kind,
        "contact_id": request.contact_id,
        "survey_id": request.survey_id,
        "dedupe_key": request.dedupe_key,
        "details": details.stored(),
        "status": AlertStatus.OPEN,
        "created_at": now,
        "updated_at": now,
    }
    unique = "survey_id" if request.survey_id is not None else "dedupe_key" if request.dedupe_key else None
    if unique is not None:
        if not await insert_ignore(session, ManagerAlert, values, [unique]):
            return None
        column = ManagerAlert.survey_id if unique == "survey_id" else ManagerAlert.dedupe_key
        alert: ManagerAlert | None = await session.scalar(
            select(ManagerAlert).where(column == values[unique])
        )
        return alert
    alert = ManagerAlert(**values | {"details": details})
    session.add(alert)
    await session.flush()
    return alert


async def set_muted(session: AsyncSession, project: Project, kind: AlertKind, muted: bool) -> list[str]:
    """Mute or unmute one alert kind for the whole project; returns the muted kinds."""
    kinds = [k for k in (project.muted_alerts or []) if k != kind.value]
    if muted:
        kinds.append(kind.value)
    project.muted_alerts = sorted(kinds)
    await session.flush()
    return project.muted_alerts


STREAK_LOOKBACK = 200  # contacts looked at for a streak; a longer one was alerted long before


async def rejection_streak(session: AsyncSession, project: Project, promoter_id: int) -> list[int]:
    """The promoter's current run of rejected (or fraud) contacts, newest first, when it is at least the
    project's number long; else []. Its oldest contact names the streak, so concurrent reviews that each
    saw one short of it are caught by the next one, and a streak alerts once however long it grows."""
    limit = project.rejections_before_alert
    if limit <= 0:
        return []
    verdicts = (
        await session.execute(
            select(Contact.id, Contact.final_verdict)
            .where(
                Contact.project_id == project.id,
                Contact.promoter_id == promoter_id,
                Contact.final_verdict.is_not(None),
                Contact.reviewed_at.is_not(None),
            )
            .order_by(Contact.reviewed_at.desc(), Contact.id.desc())
            .limit(STREAK_LOOKBACK)
        )
    ).all()
    streak = []
    for contact_id, verdict in verdicts:
        if verdict not in (Verdict.REJECT, Verdict.FRAUD):
            break
        streak.append(contact_id)
    else:
        if len(verdicts) == STREAK_LOOKBACK:
            return []  # longer than we look: its start is out of sight, and it was alerted long ago
    return streak if len(streak) >= limit else []


async def analysis_backlog(session: AsyncSession, project: Project, now: dt.datetime) -> int:
    """Voice analyses of the project still waiting after the project's analysis wait."""
    cutoff = now - dt.timedelta(minutes=project.analysis_wait_minutes)
    return int(
        await session.scalar(
            select(func.count())
            .select_from(AnalysisTask)
            .join(Audio, Audio.id == AnalysisTask.audio_id)
            .join(Contact, Contact.id == Audio.contact_id)
            .where(
                Contact.project_id == project.id,
                AnalysisTask.state.in_([AnalysisState.PENDING, AnalysisState.RUNNING]),
                AnalysisTask.created_at < cutoff,
            )
        )
        or 0
    )


async def idle_reviewers(session: AsyncSession, project: Project, now: dt.datetime) -> list[tuple[User, int]]:
    """Reviewers on shift holding open cards older than the project's idle minutes without a review of
    theirs in that time: (reviewer, open cards)."""
    since = now - dt.timedelta(minutes=project.idle_alert_minutes)
    open_cards = (
        await session.execute(
            select(Assignment.reviewer_id, func.count())
            .join(Contact, Contact.id == Assignment.contact_id)
            .join(
                Membership,
                (Membership.user_id == Assignment.reviewer_id) & (Membership.project_id == project.id),
            )
            .where(
                Contact.project_id == project.id,
                Assignment.status == AssignmentStatus.OPEN,
                Assignment.created_at < since,
                Membership.role == Role.REVIEWER,
                Membership.is_active.is_(True),
                Membership.on_shift.is_(True),
            )
            .group_by(Assignment.reviewer_id)
        )
    ).all()
    idle = []
    for reviewer_id, count in open_cards:
        recent = await session.scalar(
            select(Review.id).where(Review.reviewer_id == reviewer_id, Review.created_at >= since).limit(1)
        )
        reviewer = await session.get(User, reviewer_id)
        if recent is None and reviewer is not None:
            idle.append((reviewer, int(count)))
    return idle


async def may_act(session: AsyncSession, user: User, project_id: int, is_global_admin: bool) -> bool:
    """Active managers of the alert's own project (and global admins); nobody else, whatever the button."""
    if is_global_admin:
        return True
    found = await session.scalar(
        select(Membership.id).where(Membership.user_id == user.id, active_in(project_id, Role.MANAGER))
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
