"""The periodic survey of a project's client contacts (people who joined from a client invite link).

Every `client_survey_months`, at `client_survey_time` in the project's timezone, each active client gets
the project's question with the score buttons and an Unsubscribe button; one reminder follows after
REMIND_AFTER if unanswered, and the round closes after CLOSE_AFTER. Unsubscribing deactivates the client
membership, which the scheduler honours from then on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.sql import insert_ignore
from models import (
    AlertKind,
    ClientSurvey,
    ManagerAlert,
    Membership,
    NpsCategory,
    Project,
    Role,
    SurveyStatus,
    User,
    crypto,
)
from models.base import utcnow
from models.payloads import ClientDetractor
from services import alerts
from services.surveys import FOLLOW_UP_MAX_CHARS, SurveyError, SurveyProblem, category_of, valid_scores
from services.users import active_in

REMIND_AFTER = dt.timedelta(days=3)
CLOSE_AFTER = dt.timedelta(days=14)


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later (the month's last day when it has fewer days)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return day.replace(year=year, month=month, day=candidate)
        except ValueError:
            continue
    raise AssertionError("unreachable")


@dataclass
class Due:
    survey: ClientSurvey
    user: User
    reminder: bool


async def due_rounds(session: AsyncSession, project: Project, now: dt.datetime) -> list[Due]:
    """New rounds to send now (created here) and reminders due; the caller sends them with the outbox."""
    if project.client_survey_months <= 0:
        return []
    local = now.astimezone(ZoneInfo(project.timezone))
    due: list[Due] = []
    if local.time() >= project.client_survey_time:
        clients = (
            await session.execute(
                select(Membership, User)
                .join(User, User.id == Membership.user_id)
                .where(active_in(project.id, Role.CLIENT))
            )
        ).all()
        for membership, user in clients:
            last = await session.scalar(
                select(ClientSurvey.due_on)
                .where(ClientSurvey.project_id == project.id, ClientSurvey.user_id == user.id)
                .order_by(ClientSurvey.due_on.desc())
                .limit(1)
            )
            start = last or membership.created_at.astimezone(ZoneInfo(project.timezone)).date()
            if add_months(start, project.client_survey_months) > local.date():
                continue
            values = {
                "project_id": project.id,
                "user_id": user.id,
                "due_on": local.date(),
                "scale": project.nps_scale,
                "status": SurveyStatus.SENT,
                "sent_at": now,
                "created_at": now,
                "updated_at": now,
            }
            if await insert_ignore(session, ClientSurvey, values, ["project_id", "user_id", "due_on"]):
                survey = await session.scalar(
                    select(ClientSurvey).where(
                        ClientSurvey.project_id == project.id,
                        ClientSurvey.user_id == user.id,
                        ClientSurvey.due_on == local.date(),
                    )
                )
                assert survey is not None
                due.append(Due(survey, user, reminder=False))
    reminders = (
        await session.execute(
            select(ClientSurvey, User)
            .join(User, User.id == ClientSurvey.user_id)
            .join(
                Membership,
                (Membership.user_id == ClientSurvey.user_id)
                & (Membership.project_id == ClientSurvey.project_id)
                & (Membership.role == Role.CLIENT),
            )
            .where(
                ClientSurvey.project_id == project.id,
                ClientSurvey.status == SurveyStatus.SENT,
                ClientSurvey.reminded_at.is_(None),
                ClientSurvey.sent_at <= now - REMIND_AFTER,
                Membership.is_active.is_(True),
            )
        )
    ).all()
    for survey, user in reminders:
        survey.reminded_at = now
        due.append(Due(survey, user, reminder=True))
    await session.execute(
        update(ClientSurvey)
        .where(
            ClientSurvey.project_id == project.id,
            ClientSurvey.status == SurveyStatus.SENT,
            ClientSurvey.sent_at <= now - CLOSE_AFTER,
        )
        .values(status=SurveyStatus.EXPIRED, updated_at=now)
    )
    await session.flush()
    return due


async def held(session: AsyncSession, survey_id: int, user: User) -> ClientSurvey:
    """The client's own survey round (a forged or someone else's id is refused)."""
    survey = await session.scalar(select(ClientSurvey).where(ClientSurvey.id == survey_id).with_for_update())
    if survey is None or survey.user_id != user.id:
        raise SurveyError(SurveyProblem.UNKNOWN)
    return survey


async def answer(session: AsyncSession, survey_id: int, user: User, score: int) -> ClientSurvey:
    survey = await held(session, survey_id, user)
    if survey.status == SurveyStatus.ANSWERED:
        raise SurveyError(SurveyProblem.ANSWERED)
    if survey.status != SurveyStatus.SENT:
        raise SurveyError(SurveyProblem.EXPIRED)
    if score not in valid_scores(survey.scale):
        raise SurveyError(SurveyProblem.UNKNOWN)
    survey.score, survey.category = score, category_of(survey.scale, score)
    survey.status, survey.answered_at = SurveyStatus.ANSWERED, utcnow()
    await session.flush()
    return survey


async def follow_up(
    session: AsyncSession, survey_id: int, user: User, text: str | None
) -> alerts.AlertRequest | None:
    """The client's words (None: skipped); a detractor's round then alerts the managers."""
    survey = await held(session, survey_id, user)
    if survey.status != SurveyStatus.ANSWERED:
        raise SurveyError(SurveyProblem.UNKNOWN)
    if text is not None:
        survey.follow_up = text.strip()[:FOLLOW_UP_MAX_CHARS] or None
    await session.flush()
    if survey.category != NpsCategory.DETRACTOR:
        return None
    assert survey.score is not None  # answered: a detractor has a category, so a score
    details = ClientDetractor(
        score=survey.score,
        scale=survey.scale,
        verbatim=crypto.seal(survey.follow_up) if survey.follow_up else None,
        client=user.display_name,
        client_telegram_id=user.telegram_id,
        client_survey_id=survey.id,
    )
    existing = await session.scalar(
        select(ManagerAlert.id)
        .where(ManagerAlert.kind == AlertKind.CLIENT_DETRACTOR, ManagerAlert.project_id == survey.project_id)
        .where(ManagerAlert.stored_details["client_survey_id"].as_integer() == survey.id)
    )
    if existing is not None:
        return None
    return alerts.AlertRequest(survey.project_id, details)


async def unsubscribe(session: AsyncSession, survey_id: int, user: User) -> None:
    survey = await held(session, survey_id, user)
    await session.execute(
        update(Membership)
        .where(
            Membership.user_id == user.id,
            Membership.project_id == survey.project_id,
            Membership.role == Role.CLIENT,
        )
        .values(is_active=False)
    )
    if survey.status == SurveyStatus.SENT:
        survey.status = SurveyStatus.DECLINED
    await session.flush()
