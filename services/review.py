"""The review operation without Telegram: who reviews what, deadlines, reviews, undo, re-review, calibration."""

from __future__ import annotations

import datetime as dt
import heapq
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.outbox import cancel
from models import (
    AnalysisState,
    AnalysisTask,
    Assignment,
    AssignmentKind,
    AssignmentStatus,
    Audio,
    AudioKind,
    Contact,
    ContactStatus,
    Dispute,
    DisputeStatus,
    Membership,
    Project,
    Review,
    Role,
    User,
    Verdict,
)
from models.base import utcnow
from services import outbox_keys
from services.problems import ProblemError
from services.queue_policy import Ahead, move_ahead, queue_order
from services.scorecard import Marks, Scorecard, scorecard_of
from services.speech.report import machine_marks, read_report
from services.users import active_in

UNDO_SECONDS = 60


@dataclass
class ReviewerSlot:
    user_id: int
    open_cards: int
    capacity: int

    def __lt__(self, other: ReviewerSlot) -> bool:
        return (self.open_cards, self.user_id) < (other.open_cards, other.user_id)


async def _open_counts(session: AsyncSession, user_ids: list[int]) -> dict[int, int]:
    rows = await session.execute(
        select(Assignment.reviewer_id, func.count())
        .where(Assignment.reviewer_id.in_(user_ids), Assignment.status == AssignmentStatus.OPEN)
        .group_by(Assignment.reviewer_id)
    )
    return {int(user_id): int(n) for user_id, n in rows.all() if user_id is not None}


async def reviewer_slots(
    session: AsyncSession, project: Project, *, senior_only: bool = False, on_shift_only: bool = True
) -> list[ReviewerSlot]:
    query = select(Membership.user_id).where(active_in(project.id, Role.REVIEWER))
    if on_shift_only:
        query = query.where(Membership.on_shift.is_(True))
    if senior_only:
        query = query.where(Membership.is_senior.is_(True))
    user_ids = list(await session.scalars(query))
    counts = await _open_counts(session, user_ids)
    return [ReviewerSlot(u, counts.get(u, 0), project.max_open_cards) for u in user_ids]


async def _previous_reviewers(session: AsyncSession, contact_ids: list[int]) -> dict[int, set[int]]:
    seen: dict[int, set[int]] = defaultdict(set)
    if contact_ids:
        rows = await session.execute(
            select(Assignment.contact_id, Assignment.reviewer_id).where(
                Assignment.contact_id.in_(contact_ids), Assignment.reviewer_id.is_not(None)
            )
        )
        for contact_id, reviewer_id in rows.all():
            seen[contact_id].add(reviewer_id)
    return seen


async def _turns(session: AsyncSession, contact_id: int) -> dict[int, Rank]:
    """reviewer id -> (times they had the contact, id of their latest assignment of it)."""
    rows = await session.execute(
        select(Assignment.reviewer_id, func.count(), func.max(Assignment.id))
        .where(Assignment.contact_id == contact_id, Assignment.reviewer_id.is_not(None))
        .group_by(Assignment.reviewer_id)
    )
    return {int(reviewer): (int(times), int(latest)) for reviewer, times, latest in rows.all()}


async def exhausted(
    session: AsyncSession,
    project: Project,
    contacts: list[Contact],
    excluded: dict[int, set[int]] | None = None,
) -> list[Contact]:
    """Queued contacts that every active reviewer of the project (but their promoter) has already had."""
    reviewers = set(
        await session.scalars(select(Membership.user_id).where(active_in(project.id, Role.REVIEWER)))
    )
    if excluded is None:
        excluded = await _previous_reviewers(session, [c.id for c in contacts])
    return [
        c
        for c in contacts
        if c.status == ContactStatus.QUEUED
        and (reviewers - {c.promoter_id})
        and (reviewers - {c.promoter_id}) <= excluded.get(c.id, set())
    ]


async def previous_reviewers(session: AsyncSession, contact_id: int) -> set[int]:
    return (await _previous_reviewers(session, [contact_id])).get(contact_id, set())


async def queued_contacts(session: AsyncSession, project: Project, limit: int = 500) -> list[Contact]:
    return list(
        await session.scalars(
            select(Contact)
            .where(Contact.project_id == project.id, Contact.status == ContactStatus.QUEUED)
            .order_by(*queue_order())
            .limit(limit)
        )
    )


Rank = tuple[int, int]  # (times the reviewer had the contact, id of their latest assignment of it)


def plan(
    contacts: list[tuple[int, int]],
    slots: list[ReviewerSlot],
    excluded: dict[int, set[int]],
    preference: dict[int, dict[int, Rank]] | None = None,
) -> list[tuple[int, int]]:
    """(contact id, promoter id) in queue order -> (contact id, reviewer id): least loaded reviewer first,
    at most `capacity` open cards each, never a reviewer who already had the contact, never its promoter.

    A contact in `preference` (one every reviewer has had: `exhausted`) goes instead to the reviewer who had
    it the fewest times and the longest ago, load breaking ties, so it goes round them all in turn rather
    than back to whoever sorts first (issue #27 item 19); its `excluded` then holds only the last one."""
    heap = [s for s in slots if s.open_cards < s.capacity]
    heapq.heapify(heap)
    planned: list[tuple[int, int]] = []
    for contact_id, promoter_id in contacts:
        if not heap:
            break
        ranks = (preference or {}).get(contact_id)
        if ranks is not None:
            candidates = [
                s for s in heap if s.user_id not in excluded.get(contact_id, ()) and s.user_id != promoter_id
            ]
            if candidates:
                pick = min(candidates, key=lambda s: (ranks.get(s.user_id, (0, 0)), s.open_cards, s.user_id))
                heap.remove(pick)
                heapq.heapify(heap)
                planned.append((contact_id, pick.user_id))
                pick.open_cards += 1
                if pick.open_cards < pick.capacity:
                    heapq.heappush(heap, pick)
            continue
        skipped: list[ReviewerSlot] = []
        chosen: ReviewerSlot | None = None
        while heap:
            slot = heapq.heappop(heap)
            if slot.user_id in excluded.get(contact_id, ()) or slot.user_id == promoter_id:
                skipped.append(slot)
                continue
            chosen = slot
            break
        if chosen is not None:
            planned.append((contact_id, chosen.user_id))
            chosen.open_cards += 1
            if chosen.open_cards < chosen.capacity:
                skipped.append(chosen)
        for slot in skipped:
            heapq.heappush(heap, slot)
    return planned


def _locked(session: AsyncSession, query):  # type: ignore[no-untyped-def]
    """Several dispatchers on PostgreSQL never take the same contact. SQLite has one writer anyway, and
    SQLAlchemy renders no FOR UPDATE for it (tests/test_layers.py pins that)."""
    return query.with_for_update(skip_locked=True)


async def _queue_head(session: AsyncSession, project: Project, limit: int, now: dt.datetime) -> list[Contact]:
    """The queue's head in services.queue_policy's order: flagged (higher priority) first, then the longest waiting.

    A contact whose voice analysis is still pending waits for it (its card should carry the flags), but
    never longer than the project's analysis_wait_minutes, so review goes on when no voice worker runs."""
    analysing = (
        select(AnalysisTask.id)
        .join(Audio, Audio.id == AnalysisTask.audio_id)
        .where(
            Audio.contact_id == Contact.id,
            AnalysisTask.state.in_([AnalysisState.PENDING, AnalysisState.RUNNING]),
        )
        .exists()
    )
    ready = or_(~analysing, Contact.queued_at <= now - dt.timedelta(minutes=project.analysis_wait_minutes))
    return list(
        await session.scalars(
            _locked(
                session,
                select(Contact)
                .where(Contact.project_id == project.id, Contact.status == ContactStatus.QUEUED, ready)
                .order_by(*queue_order())
                .limit(limit),
            )
        )
    )


async def assign_queued(
    session: AsyncSession, project: Project, *, now: dt.datetime | None = None
) -> list[Assignment]:
    """One dispatch round for a project: queued contacts (flagged first, then oldest) and calibration samples."""
    now = now or utcnow()
    slots = await reviewer_slots(session, project)
    capacity = sum(max(0, s.capacity - s.open_cards) for s in slots)
    if capacity == 0:
        return []
    queued = await _queue_head(session, project, capacity * 2, now)
    calibration = list(
        await session.scalars(
            _locked(
                session,
                select(Contact)
                .where(
                    Contact.project_id == project.id,
                    Contact.status == ContactStatus.REVIEWED,
                    Contact.calibration.is_(True),
                )
                .where(
                    select(func.count())
                    .select_from(Review)
                    .where(Review.contact_id == Contact.id, Review.undone_at.is_(None))
                    .scalar_subquery()
                    == 1
                )
                .order_by(Contact.reviewed_at, Contact.id)
                .limit(capacity),
            )
        )
    )
    contacts = {c.id: c for c in [*queued, *calibration]}
    excluded = await _previous_reviewers(session, list(contacts))
    preference: dict[int, dict[int, Rank]] = {}
    for contact in await exhausted(session, project, list(contacts.values()), excluded):
        # Every reviewer has had it: round again (never a dead queue), to whoever had it least and longest
        # ago, and never straight back to the one who had it last (with one reviewer it waits; the managers'
        # alert, raised once by jobs/review._alert_exhausted, says so).
        preference[contact.id] = await _turns(session, contact.id)
        last = max(preference[contact.id].items(), key=lambda item: item[1][1])[0]
        excluded[contact.id] = {last}
    planned = plan([(c.id, c.promoter_id) for c in contacts.values()], slots, excluded, preference)
    cards = []
    for contact_id, reviewer_id in planned:
        contact = contacts[contact_id]
        reviewed = contact.status == ContactStatus.REVIEWED
        cards.append(
            (contact, reviewer_id, AssignmentKind.CALIBRATION if reviewed else AssignmentKind.PRIMARY)
        )
    return await _open_cards(session, project, cards, excluded, now)


async def _open_cards(
    session: AsyncSession,
    project: Project,
    cards: list[tuple[Contact, int, AssignmentKind]],
    excluded: dict[int, set[int]],
    now: dt.datetime,
) -> list[Assignment]:
    """The planned (contact, reviewer, kind) cards, each counted as the attempt after the reviewers the
    contact had (`excluded`), their marks prefilled from the speech checks; flushed."""
    created = [
        _assign(
            session,
            contact,
            reviewer_id,
            kind=kind,
            project=project,
            now=now,
            previous=len(excluded.get(contact.id, ())),
        )
        for contact, reviewer_id, kind in cards
    ]
    await prefill_marks(session, project, created)
    await session.flush()
    return created


def _assign(
    session: AsyncSession,
    contact: Contact,
    reviewer_id: int | None,
    *,
    kind: AssignmentKind,
    project: Project,
    now: dt.datetime,
    previous: int,
) -> Assignment:
    assignment = Assignment(
        contact_id=contact.id,
        reviewer_id=reviewer_id,
        kind=kind,
        status=AssignmentStatus.OPEN if reviewer_id else AssignmentStatus.OFFERED,
        attempt=previous + 1,
        assigned_at=now,
        deadline_at=now + dt.timedelta(minutes=project.review_sla_minutes) if reviewer_id else None,
    )
    session.add(assignment)
    contact.transition_to(ContactStatus.IN_REVIEW)
    return assignment


async def prefill_marks(session: AsyncSession, project: Project, assignments: list[Assignment]) -> None:
    """New cards start with the marks the speech checks say (issue #25 item 5), where the project has
    speech analysis on and the contact's report is stored: the reviewer confirms or changes them. Not on a
    calibration card, whose blind second review measures people against each other."""
    if not (project.speech_settings or {}).get("enabled"):
        return
    wanted = [a for a in assignments if a.kind != AssignmentKind.CALIBRATION]
    if not wanted:
        return
    rows = await session.execute(
        select(Audio.contact_id, AnalysisTask.speech)
        .join(AnalysisTask, AnalysisTask.audio_id == Audio.id)
        .where(Audio.contact_id.in_({a.contact_id for a in wanted}), Audio.kind == AudioKind.DIALOGUE)
        .order_by(AnalysisTask.id)
    )
    reports = {contact_id: speech for contact_id, speech in rows}  # the latest analysis wins
    scorecard = scorecard_of(project.scorecard)
    for assignment in wanted:
        report = read_report(reports.get(assignment.contact_id))
        if report is not None and (marks := machine_marks(report.checks, scorecard)):
            assignment.draft_marks = marks


async def offer_to_group(
    session: AsyncSession, project: Project, *, now: dt.datetime | None = None, outstanding: int = 5
) -> list[Assignment]:
    """Group mode: post queued contacts to the reviewers' chat, where the first to press Take gets them."""
    now = now or utcnow()
    open_offers = int(
        await session.scalar(
            select(func.count())
            .select_from(Assignment)
            .join(Contact, Contact.id == Assignment.contact_id)
            .where(Contact.project_id == project.id, Assignment.status == AssignmentStatus.OFFERED)
        )
        or 0
    )
    room = outstanding - open_offers
    if room <= 0:
        return []
    queued = await _queue_head(session, project, room, now)
    offers = [
        _assign(session, c, None, kind=AssignmentKind.PRIMARY, project=project, now=now, previous=0)
        for c in queued
    ]
    await prefill_marks(session, project, offers)
    await session.flush()
    return offers


class TakeResult(StrEnum):
    TAKEN = "taken"
    ALREADY_TAKEN = "already_taken"
    OWN_CONTACT = "own_contact"
    AT_CAPACITY = "at_capacity"


async def take_offer(
    session: AsyncSession,
    assignment_id: int,
    reviewer: User,
    project: Project,
    *,
    now: dt.datetime | None = None,
) -> TakeResult:
    """Atomic claim: of two presses, exactly one conditional UPDATE matches."""
    now = now or utcnow()
    assignment = await session.get(Assignment, assignment_id)
    if assignment is None or assignment.status != AssignmentStatus.OFFERED:
        return TakeResult.ALREADY_TAKEN
    contact = await session.get(Contact, assignment.contact_id)
    if contact is not None and contact.promoter_id == reviewer.id:
        return TakeResult.OWN_CONTACT
    if (await _open_counts(session, [reviewer.id])).get(reviewer.id, 0) >= project.max_open_cards:
        return TakeResult.AT_CAPACITY
    result = await session.execute(
        update(Assignment)
        .where(Assignment.id == assignment_id, Assignment.status == AssignmentStatus.OFFERED)
        .values(
            reviewer_id=reviewer.id,
            status=AssignmentStatus.OPEN,
            assigned_at=now,
            deadline_at=now + dt.timedelta(minutes=project.review_sla_minutes),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return TakeResult.ALREADY_TAKEN
    await session.refresh(assignment)
    return TakeResult.TAKEN


class ReviewProblem(StrEnum):
    MISSING_MARKS = "missing_marks"
    CRITICAL_APPROVE = "critical_approve"
    COMMENT_REQUIRED = "comment_required"
    COMMENT_TOO_LONG = "comment_too_long"
    TOO_LATE = "too_late"
    ALREADY_SUBMITTED = "already_submitted"
    UNKNOWN_CRITERION = "unknown_criterion"


class ReviewError(ProblemError[ReviewProblem]):
    """A reviewer's step refused: a verdict, a comment, a mark, a submission or an undo."""


def check_verdict(scorecard: Scorecard, marks: Marks, verdict: Verdict, comment: str | None) -> None:
    if scorecard.missing(marks) and verdict != Verdict.FRAUD:
        raise ReviewError(ReviewProblem.MISSING_MARKS)
    if verdict == Verdict.APPROVE and scorecard.critical_failed(marks):
        raise ReviewError(ReviewProblem.CRITICAL_APPROVE)
    if verdict in scorecard.comment_required and not (comment or "").strip():
        raise ReviewError(ReviewProblem.COMMENT_REQUIRED)


# The longest comment kept, in characters. The promoter's feedback carries the comment whole, and a bot's text
# message may have at most 4096 characters (tdlib td/telegram/MessageContent.cpp, create_input_message_content:
# utf8_length(text) > "message_text_length_max" is "Message is too long"); a reviewer can type 4096 in one
# message. A longer comment is refused with this limit, never cut (issue #27 item 13).
COMMENT_LIMIT = 2000


def comment_length(text: str) -> int:
    """A text's length as that check counts it: Unicode code points."""
    return len(text)


def set_comment(assignment: Assignment, text: str) -> str:
    """Keep the reviewer's comment on the card's draft, whole; raises COMMENT_TOO_LONG past COMMENT_LIMIT
    (issue #27 item 13: it was stored cut while the reviewer read "Comment saved")."""
    comment = text.strip()
    if comment_length(comment) > COMMENT_LIMIT:
        raise ReviewError(ReviewProblem.COMMENT_TOO_LONG)
    assignment.draft_comment = comment
    return comment


async def lock_card(session: AsyncSession, assignment_id: int) -> Assignment | None:
    """The card's assignment as it stands now, locked until this press's transaction ends.

    Every press on a card reads it through here, so presses on one card take turns: on PostgreSQL a second
    press (Fraud in the same burst as Approve) waits for the first's row lock and then sees the card rated,
    instead of reading it open and asking for a comment on a card already submitted (issue #27 item 15).
    SQLite runs one writing transaction at a time (every transaction begins IMMEDIATE), so it needs no lock."""
    query = (
        select(Assignment)
        .where(Assignment.id == assignment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    card: Assignment | None = await session.scalar(query)
    return card


def is_calibration_sample(contact_id: int, share: float) -> bool:
    """Deterministic, evenly spread choice of the share of contacts reviewed twice."""
    return (contact_id * 2654435761 % 2**32) / 2**32 < share


async def submit_review(
    session: AsyncSession,
    assignment: Assignment,
    scorecard: Scorecard,
    project: Project,
    verdict: Verdict,
    *,
    comment: str | None = None,
    now: dt.datetime | None = None,
) -> Review:
    """Record the immutable review and move the contact on. The caller checked who pressed."""
    now = now or utcnow()
    marks: Marks = dict(assignment.draft_marks)
    check_verdict(scorecard, marks, verdict, comment)
    assert assignment.reviewer_id is not None  # only open, owned assignments get here
    # Claim the card with a conditional update: of two presses at once (a double tap, two devices) exactly
    # one moves it from open; on PostgreSQL the second waits for the first's row lock and then matches
    # nothing, instead of failing on the contact's state after the first committed.
    claimed = await session.execute(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.status == AssignmentStatus.OPEN)
        .values(status=AssignmentStatus.DONE, closed_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise ReviewError(ReviewProblem.ALREADY_SUBMITTED)
    score = 0.0 if verdict == Verdict.FRAUD and scorecard.missing(marks) else scorecard.score(marks)
    review = Review(
        assignment_id=assignment.id,
        contact_id=assignment.contact_id,
        reviewer_id=assignment.reviewer_id,
        marks=marks,
        score=score,
        verdict=verdict,
        comment=(comment or "").strip() or None,
    )
    session.add(review)
    assignment.status, assignment.closed_at = AssignmentStatus.DONE, now
    contact = await session.get(Contact, assignment.contact_id)
    assert contact is not None  # foreign key
    contact.transition_to(ContactStatus.REVIEWED)
    if assignment.kind == AssignmentKind.PRIMARY:
        contact.score, contact.final_verdict, contact.reviewed_at = score, verdict, now
        contact.calibration = is_calibration_sample(contact.id, project.calibration_share)
    elif assignment.kind == AssignmentKind.REREVIEW:
        contact.score, contact.final_verdict = score, verdict
        contact.transition_to(ContactStatus.FINAL)
        contact.finalized_at = now
        dispute = await session.scalar(select(Dispute).where(Dispute.contact_id == contact.id))
        if dispute is not None and dispute.status == DisputeStatus.OPEN:
            dispute.status, dispute.resolved_at = DisputeStatus.RESOLVED, now
            await session.flush()
            dispute.resolution_review_id = review.id
    await session.flush()
    return review


def cycle_mark(assignment: Assignment, scorecard: Scorecard, index: int) -> None:
    """One press on a criterion's button: yes/no flips (first press: yes); a scale counts 0..max and round."""
    if not 0 <= index < len(scorecard.criteria):
        raise ReviewError(ReviewProblem.UNKNOWN_CRITERION)
    criterion = scorecard.criteria[index]
    current = assignment.draft_marks.get(criterion.key)
    if criterion.type == "yes_no":
        following = 1 if current is None else 1 - int(current)
    else:
        following = 0 if current is None else (int(current) + 1) % (criterion.max + 1)
    assignment.draft_marks = {**assignment.draft_marks, criterion.key: following}


async def undo_review(session: AsyncSession, review: Review, *, now: dt.datetime | None = None) -> Assignment:
    """Within UNDO_SECONDS the reviewer may take a verdict back; the review row stays, marked undone."""
    now = now or utcnow()
    assignment = await session.get(Assignment, review.assignment_id)
    contact = await session.get(Contact, review.contact_id)
    assert assignment is not None and contact is not None  # foreign keys
    if (
        review.undone_at is not None
        or (now - review.created_at).total_seconds() > UNDO_SECONDS
        or contact.status != ContactStatus.REVIEWED
    ):
        raise ReviewError(ReviewProblem.TOO_LATE)
    review.undone_at = now
    await cancel(session, outbox_keys.feedback(review.id))  # the promoter never hears of a verdict taken back
    assignment.status, assignment.closed_at = AssignmentStatus.OPEN, None
    contact.transition_to(ContactStatus.IN_REVIEW)
    if assignment.kind == AssignmentKind.PRIMARY:
        contact.score = contact.final_verdict = contact.reviewed_at = None
        contact.calibration = False
    await session.flush()
    return assignment


async def return_assignment(
    session: AsyncSession, assignment: Assignment, *, now: dt.datetime | None = None
) -> None:
    """The reviewer hands the card back; the contact goes to someone else."""
    await _release(session, assignment, AssignmentStatus.RETURNED, now or utcnow())


async def _release(
    session: AsyncSession, assignment: Assignment, status: AssignmentStatus, now: dt.datetime
) -> Contact:
    assignment.status, assignment.closed_at = status, now
    contact = await session.get(Contact, assignment.contact_id)
    assert contact is not None  # foreign key
    back = {
        AssignmentKind.PRIMARY: ContactStatus.QUEUED,
        AssignmentKind.CALIBRATION: ContactStatus.REVIEWED,
        AssignmentKind.REREVIEW: ContactStatus.DISPUTED,
    }[assignment.kind]
    contact.transition_to(back)
    if back == ContactStatus.QUEUED:
        move_ahead(contact, Ahead.WAITED_ALREADY)
    await session.flush()
    return contact


@dataclass
class Expiry:
    assignment: Assignment
    contact: Contact
    expiries_in_a_row: int


async def expire_overdue(session: AsyncSession, *, now: dt.datetime | None = None) -> list[Expiry]:
    now = now or utcnow()
    overdue = list(
        await session.scalars(
            _locked(
                session,
                select(Assignment)
                .where(Assignment.status == AssignmentStatus.OPEN, Assignment.deadline_at < now)
                .order_by(Assignment.deadline_at),
            )
        )
    )
    expiries = []
    for assignment in overdue:
        contact = await _release(session, assignment, AssignmentStatus.EXPIRED, now)
        statuses = list(
            await session.scalars(
                select(Assignment.status)
                .where(Assignment.contact_id == contact.id, Assignment.kind == assignment.kind)
                .order_by(Assignment.id.desc())
            )
        )
        in_a_row = 0
        for status in statuses:
            if status != AssignmentStatus.EXPIRED:
                break
            in_a_row += 1
        expiries.append(Expiry(assignment, contact, in_a_row))
    return expiries


async def schedule_rereviews(
    session: AsyncSession, project: Project, *, now: dt.datetime | None = None
) -> list[Assignment]:
    """Daily: disputed contacts, and contacts whose two reviews disagree, go to a senior who has not seen them."""
    now = now or utcnow()
    disputed = list(
        await session.scalars(
            select(Contact)
            .where(Contact.project_id == project.id, Contact.status == ContactStatus.DISPUTED)
            .order_by(Contact.id)
        )
    )
    verdicts = (
        select(Review.contact_id)
        .join(Contact, Contact.id == Review.contact_id)
        .where(
            Contact.project_id == project.id,
            Contact.status == ContactStatus.REVIEWED,
            Review.undone_at.is_(None),
        )
        .group_by(Review.contact_id)
        .having(func.count(func.distinct(Review.verdict)) > 1)
    )
    disagreeing = list(
        await session.scalars(select(Contact).where(Contact.id.in_(verdicts)).order_by(Contact.id))
    )
    contacts = [*disputed, *disagreeing]
    if not contacts:
        return []
    slots = await reviewer_slots(session, project, senior_only=True)
    if not slots:
        slots = await reviewer_slots(session, project, senior_only=True, on_shift_only=False)
    for slot in slots:
        slot.capacity = slot.open_cards + len(contacts)  # the daily re-review is not capped by K
    excluded = await _previous_reviewers(session, [c.id for c in contacts])
    by_id = {c.id: c for c in contacts}
    cards = []
    for contact_id, reviewer_id in plan([(c.id, c.promoter_id) for c in contacts], slots, excluded):
        contact = by_id[contact_id]
        if contact.status == ContactStatus.REVIEWED:
            contact.transition_to(ContactStatus.DISPUTED)  # a disagreement is disputed by the data itself
        cards.append((contact, reviewer_id, AssignmentKind.REREVIEW))
    return await _open_cards(session, project, cards, excluded, now)


CARD = "card"  # the outbox anchor kind of review cards


def card_anchor(assignment_id: int) -> str:
    """The outbox anchor of an assignment's card: its Telegram message id is kept on the assignment."""
    return f"{CARD}:{assignment_id}"


class CardAnchor:
    """infra.outbox.MessageAnchor for review cards (the expiry job and the handlers edit the card later)."""

    async def remember(self, session: AsyncSession, key: str, chat_id: int, message_id: int) -> None:
        await session.execute(
            update(Assignment).where(Assignment.id == int(key)).values(chat_id=chat_id, message_id=message_id)
        )

    async def find(self, session: AsyncSession, key: str) -> int | None:
        return await session.scalar(select(Assignment.message_id).where(Assignment.id == int(key)))


async def open_card_contacts(session: AsyncSession, reviewer_id: int) -> list[int]:
    """The contacts of a reviewer's open cards (/cards)."""
    return list(
        await session.scalars(
            select(Assignment.contact_id)
            .where(Assignment.reviewer_id == reviewer_id, Assignment.status == AssignmentStatus.OPEN)
            .order_by(Assignment.id)
        )
    )
