"""Capacity (issue #25 item 6): how many contacts the machine decided, how many went to people, how many
still wait, and the reviewer-hours the waiting ones need. Shown in the daily digest and in /report.

The counts of a period are of the contacts submitted in it (the digest's "received", read through the index
ix_contact_project_submitted), in one grouped query:
- decided automatically: `routed_to == "automatic"` (services/automatic.py);
- sent to people: every other contact that reached the queue (status past "received"): `routed_to ==
  "person"`, or no routing decision at all (routing off, or no speech report), since reviewers get those;
- decided by people: of those sent to people, the ones with a final verdict.
Waiting is now, not of the period: the project's contacts queued or in review (index ix_contact_queue).

Reviewer minutes per contact (`minutes_per_contact`), where the figure comes from:
- measured: the median, over the reviews written in the REVIEW_DAYS days before now and not undone, of the
  time from the card reaching its reviewer (`Assignment.assigned_at`, reset when a card offered in the
  reviewers' group is taken) to the review (`Review.created_at`), sorted by the database. It counts a card
  waiting unread in a reviewer's chat too, so it leans high: an upper bound of the work, not a stopwatch;
  a review dated before its card is left out;
- estimated, when no review was written in those days (an assumption, not a measurement): the mean length
  of the waiting contacts' recordings (`Audio.duration_seconds`; a reviewer listens to the whole recording)
  plus OVERHEAD_MINUTES for reading the form, marking the scorecard and writing a comment.
The queue needs `waiting * minutes_per_contact / 60` reviewer-hours (`capacity_of`, pure).
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.sql import dialect_of
from models import Assignment, Audio, AudioKind, Contact, ContactStatus, Project, Review
from models.base import utcnow
from services.period_queries import reviews_in, submitted_in
from services.speech.routing import AUTOMATIC

REVIEW_DAYS = 7  # the reviews whose durations give the minutes per contact
OVERHEAD_MINUTES = 2.0  # assumption: form, marks and comment on top of listening, when nothing is measured
WAITING = (ContactStatus.QUEUED, ContactStatus.IN_REVIEW)
MEASURED, ESTIMATED = "reviews", "recordings"


@dataclass(frozen=True)
class Capacity:
    """Kept in the digest log as models.payloads.LoggedCapacity: the two keep the same fields."""

    automatic: int = 0  # contacts of the period decided by the machine
    to_people: int = 0  # contacts of the period queued for reviewers
    decided_by_people: int = 0  # of those, the ones with a final verdict
    waiting: int = 0  # queued or in review now, any day's
    minutes_per_contact: float = 0.0
    minutes_source: str = ESTIMATED  # MEASURED: median of `reviews_measured` reviews; ESTIMATED: recordings
    reviews_measured: int = 0
    queue_hours: float = 0.0  # reviewer-hours the waiting contacts need


def capacity_of(
    *,
    automatic: int,
    to_people: int,
    decided_by_people: int,
    waiting: int,
    median_review_minutes: float | None,
    reviews_measured: int,
    mean_recording_seconds: float | None,
) -> Capacity:
    """Pure: the measured median where there is one, else the recordings' length plus OVERHEAD_MINUTES."""
    if median_review_minutes is not None and reviews_measured > 0:
        minutes, source = median_review_minutes, MEASURED
    else:
        minutes, source, reviews_measured = (
            (mean_recording_seconds or 0.0) / 60 + OVERHEAD_MINUTES,
            ESTIMATED,
            0,
        )
    return Capacity(
        automatic=automatic,
        to_people=to_people,
        decided_by_people=decided_by_people,
        waiting=waiting,
        minutes_per_contact=minutes,
        minutes_source=source,
        reviews_measured=reviews_measured,
        queue_hours=waiting * minutes / 60,
    )


async def capacity(
    session: AsyncSession,
    project: Project,
    start: dt.datetime,
    end: dt.datetime,
    *,
    now: dt.datetime | None = None,
) -> Capacity:
    """The figures of the contacts submitted in [start, end), and the queue as it stands `now`."""
    now = now or utcnow()
    automatic_now = Contact.routed_to == AUTOMATIC
    for_people = and_(
        Contact.status != ContactStatus.RECEIVED,
        or_(Contact.routed_to.is_(None), Contact.routed_to != AUTOMATIC),
    )
    automatic, to_people, decided = (
        await session.execute(
            select(
                func.sum(case((automatic_now, 1), else_=0)),
                func.sum(case((for_people, 1), else_=0)),
                func.sum(case((and_(for_people, Contact.final_verdict.is_not(None)), 1), else_=0)),
            ).where(submitted_in(project.id, start, end))
        )
    ).one()
    waiting, recording_seconds = (
        await session.execute(
            select(func.count(func.distinct(Contact.id)), func.avg(Audio.duration_seconds))
            .select_from(Contact)
            .outerjoin(Audio, and_(Audio.contact_id == Contact.id, Audio.kind == AudioKind.DIALOGUE))
            .where(Contact.project_id == project.id, Contact.status.in_(WAITING))
        )
    ).one()
    measured, median = await _median_review_minutes(
        session, project, now - dt.timedelta(days=REVIEW_DAYS), now
    )
    return capacity_of(
        automatic=int(automatic or 0),
        to_people=int(to_people or 0),
        decided_by_people=int(decided or 0),
        waiting=int(waiting or 0),
        median_review_minutes=median,
        reviews_measured=measured,
        mean_recording_seconds=float(recording_seconds) if recording_seconds is not None else None,
    )


async def _median_review_minutes(
    session: AsyncSession, project: Project, start: dt.datetime, end: dt.datetime
) -> tuple[int, float | None]:
    """(reviews, the median minutes from card to review) over the reviews written in [start, end); the
    database sorts, only the middle one or two rows are fetched."""
    if dialect_of(session) == "postgresql":
        seconds: Any = func.extract("epoch", Review.created_at - Assignment.assigned_at)
    else:
        seconds = (func.julianday(Review.created_at) - func.julianday(Assignment.assigned_at)) * 86400.0
    reviews = (
        reviews_in(project, start, end, seconds.label("s"))
        .join(Assignment, Assignment.id == Review.assignment_id)
        # a review dated before its card reached the reviewer (two machines' clocks, a card taken again
        # after its review) measures nothing: a negative duration pulled the median below zero
        .where(Review.created_at >= Assignment.assigned_at)
    )
    count = int(await session.scalar(select(func.count()).select_from(reviews.subquery())) or 0)
    if not count:
        return 0, None
    middle = [
        float(v)
        for v in await session.scalars(
            reviews.order_by(seconds).offset((count - 1) // 2).limit(2 - count % 2)
        )
    ]
    return count, statistics.fmean(middle) / 60 if middle else None
