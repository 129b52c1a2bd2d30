"""What the web console shows (issue #26): who may see which projects, and the queries behind its pages.

No web framework here: `web/` renders what these functions return. Every query takes a `Viewer` and reads
only the viewer's projects; a contact of another project is `None`, exactly like a missing one, and the
caller refuses it. Pages read through `infra.db.read_session`, so a long read holds up no writer.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, Text, and_, case, cast, exists, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from infra.sql import dialect_of
from models import (
    AlertStatus,
    AnalysisTask,
    Assignment,
    AssignmentStatus,
    Audio,
    AudioKind,
    Contact,
    DashboardDay,
    DashboardPromoterDay,
    DashboardStoreDay,
    Dispute,
    FlagKind,
    ManagerAlert,
    Membership,
    NpsAnswer,
    NpsCategory,
    NpsSurvey,
    Project,
    Review,
    Role,
    User,
    Verdict,
    VoiceFlag,
)
from services import console_rollup
from services.billing import counts as billing_counts
from services.billing import runs
from services.console_figures import (
    NO_STORE,
    answer_sums,
    as_date,
    day_of,
    store_of,
    utc_range,
    verdict_sums,
)
from services.rates import share
from services.reviewer_agreement import agreement
from services.speech.routing import AUTOMATIC, PERSON

PAGE_SIZE = 50
MAX_PAGE = 2000  # deeper than this nobody pages; a filter is the way there
CONSOLE_ROLES = (Role.MANAGER, Role.ADMIN)  # a project's admin manages it; reviewers and promoters: nothing
SORTS = {"new": "newest first", "old": "oldest first", "score": "lowest score first", "id": "by number"}
UNREVIEWED = "none"  # the verdict filter's value for contacts without a verdict yet
UNANSWERED = "none"  # the NPS filter's value for contacts without a customer's answer
DISPUTES = ("yes", "no")  # the dispute filter: has one (open or resolved), or none
MAX_SEARCH = 100  # characters of a text search
ROUTES = (AUTOMATIC, PERSON)  # the automatic/human filter: decided by speech routing, or left to people


@dataclass(frozen=True)
class Viewer:
    """A signed-in person and the projects they may see (all of them for a global admin)."""

    user_id: int
    telegram_id: int
    name: str
    locale: str | None
    is_admin: bool
    project_ids: frozenset[int]  # the projects whose contacts, reviewers and alerts they see
    client_project_ids: frozenset[int] = frozenset()  # a client contact's: billing and NPS only

    @property
    def is_client_only(self) -> bool:
        """A client company's contact person: the client page, nothing else."""
        return not self.is_admin and not self.project_ids and bool(self.client_project_ids)


async def viewer_for(session: AsyncSession, telegram_id: int, admin_ids: list[int]) -> Viewer | None:
    """Read afresh on every request: a membership removed a minute ago already shows nothing."""
    user = await session.scalar(select(User).where(User.telegram_id == telegram_id))
    is_admin = telegram_id in admin_ids
    if user is None and is_admin:  # ADMIN_IDS names them before they ever wrote to the bot
        return Viewer(
            0,
            telegram_id,
            f"id{telegram_id}",
            None,
            True,
            frozenset(await session.scalars(select(Project.id))),
        )
    if user is None or user.is_blocked:
        return None
    if is_admin:
        return Viewer(
            user.id,
            telegram_id,
            user.display_name,
            user.locale,
            True,
            frozenset(await session.scalars(select(Project.id))),
        )
    memberships = (
        await session.execute(
            select(Membership.project_id, Membership.role).where(
                Membership.user_id == user.id,
                Membership.is_active.is_(True),
                Membership.role.in_([*CONSOLE_ROLES, Role.CLIENT]),
            )
        )
    ).all()
    ids = frozenset(pid for pid, role in memberships if role in CONSOLE_ROLES)
    clients = frozenset(pid for pid, role in memberships if role == Role.CLIENT)
    if not ids and not clients:
        return None
    return Viewer(user.id, telegram_id, user.display_name, user.locale, False, ids, clients)


# -- contacts --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContactFilter:
    start: dt.date
    end: dt.date  # inclusive
    project_id: int | None = None
    store: str | None = None
    promoter_id: int | None = None
    reviewer_id: int | None = None
    verdict: str | None = None  # a Verdict value, or UNREVIEWED
    flag: str | None = None  # a FlagKind value, or "any"
    dispute: str | None = None  # "yes" or "no" (DISPUTES)
    nps: str | None = None  # an NpsCategory value, or UNANSWERED
    routed: str | None = None  # AUTOMATIC or PERSON (ROUTES)
    text: str | None = None  # in reviewers' comments and the speech transcript
    sort: str = "new"
    page: int = 1


@dataclass(frozen=True)
class ContactRow:
    id: int
    project: str
    submitted_at: dt.datetime
    promoter: str
    store: str
    status: str
    verdict: str | None
    score: float | None
    flags: int
    nps: int | None
    routed: str | None = None  # AUTOMATIC when speech routing decided it


@dataclass(frozen=True)
class ContactPage:
    rows: list[ContactRow]
    page: int
    has_next: bool


def _scoped(viewer: Viewer, column: Any, project_id: int | None) -> Any:
    if project_id is not None:
        return column == project_id if project_id in viewer.project_ids else column.is_(None)
    if viewer.is_admin:
        return column.is_not(None)
    return column.in_(sorted(viewer.project_ids))


async def zone_of(session: AsyncSession, viewer: Viewer, project_id: int | None) -> str:
    """The time zone days are counted in: the chosen project's, else that of the viewer's first project."""
    wanted = project_id if project_id in viewer.project_ids else None
    query = select(Project.timezone).order_by(Project.id).limit(1)
    if wanted is not None:
        query = query.where(Project.id == wanted)
    elif not viewer.is_admin:
        query = query.where(Project.id.in_(sorted(viewer.project_ids)))
    return await session.scalar(query) or "UTC"


def contacts_query(viewer: Viewer, chosen: ContactFilter, dialect: str, zone: str) -> Select[Any]:
    """The filtered contacts, without columns: the page and the export add their own."""
    first, last = utc_range(chosen.start, chosen.end, zone)
    conditions = [
        _scoped(viewer, Contact.project_id, chosen.project_id),
        Contact.submitted_at >= first,
        Contact.submitted_at < last,
    ]
    if chosen.store:
        conditions.append(store_of(dialect) == chosen.store)
    if chosen.promoter_id is not None:
        conditions.append(Contact.promoter_id == chosen.promoter_id)
    if chosen.verdict == UNREVIEWED:
        conditions.append(Contact.final_verdict.is_(None))
    elif chosen.verdict in {v.value for v in Verdict}:
        conditions.append(Contact.final_verdict == Verdict(chosen.verdict))
    if chosen.reviewer_id is not None:
        conditions.append(
            Contact.id.in_(
                select(Review.contact_id).where(
                    Review.reviewer_id == chosen.reviewer_id, Review.undone_at.is_(None)
                )
            )
        )
    if chosen.flag == "any":
        conditions.append(exists().where(VoiceFlag.contact_id == Contact.id))
    elif chosen.flag in {k.value for k in FlagKind}:
        conditions.append(
            exists().where(VoiceFlag.contact_id == Contact.id, VoiceFlag.kind == FlagKind(chosen.flag))
        )
    if chosen.dispute in DISPUTES:
        disputed = exists().where(Dispute.contact_id == Contact.id)
        conditions.append(disputed if chosen.dispute == "yes" else ~disputed)
    if chosen.nps == UNANSWERED or chosen.nps in {c.value for c in NpsCategory}:
        answered = exists().where(NpsSurvey.contact_id == Contact.id, NpsAnswer.survey_id == NpsSurvey.id)
        if chosen.nps == UNANSWERED:
            conditions.append(~answered)
        else:
            conditions.append(answered.where(NpsAnswer.category == NpsCategory(chosen.nps)))
    if chosen.routed == AUTOMATIC:
        conditions.append(Contact.routed_to == AUTOMATIC)
    elif chosen.routed == PERSON:  # routed to people, or never routed (speech routing off): people decide
        conditions.append(or_(Contact.routed_to.is_(None), Contact.routed_to != AUTOMATIC))
    if chosen.text and chosen.text.strip():
        conditions.append(_text_search(chosen.text.strip()[:MAX_SEARCH]))
    return select().select_from(Contact).where(*conditions)


def _text_search(text: str) -> Any:
    """`text` in a live review's comment, or in the contact's speech report (a JSON column, searched as its
    text: the transcript's words, and its keys too). Case-insensitive where the database folds case (ILIKE
    on PostgreSQL; on SQLite `lower()` folds ASCII only). JSON text escapes quotes, and SQLAlchemy writes
    non-ASCII as \\u escapes on SQLite, so the report is searched for `text` as JSON would write it too."""
    in_comments = exists().where(
        Review.contact_id == Contact.id,
        Review.undone_at.is_(None),
        Review.comment.icontains(text, autoescape=True),
    )
    report = cast(AnalysisTask.speech, Text)
    spellings = {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    in_speech = exists().where(
        Audio.contact_id == Contact.id,
        AnalysisTask.audio_id == Audio.id,
        AnalysisTask.speech.is_not(None),
        or_(*(report.icontains(spelling, autoescape=True) for spelling in sorted(spellings))),
    )
    return or_(in_comments, in_speech)


def _ordered(query: Select[Any], sort: str) -> Select[Any]:
    if sort == "old":
        return query.order_by(Contact.submitted_at, Contact.id)
    if sort == "score":
        return query.order_by(Contact.score.is_(None), Contact.score, Contact.id)
    if sort == "id":
        return query.order_by(Contact.id.desc())
    return query.order_by(Contact.submitted_at.desc(), Contact.id.desc())


def _listed(dialect: str) -> tuple[Any, ...]:
    """The columns a contact is listed with, on the console's page and in its export (`_named` joins the
    project and promoter they name)."""
    return (
        Contact.id,
        Project.name,
        Contact.submitted_at,
        User.first_name,
        User.last_name,
        store_of(dialect),
        Contact.status,
        Contact.final_verdict,
        Contact.score,
    )


def _named(query: Select[Any]) -> Select[Any]:
    """`query` with its contacts' project and promoter joined, for their names."""
    return query.join(Project, Project.id == Contact.project_id).join(User, User.id == Contact.promoter_id)


async def contact_page(session: AsyncSession, viewer: Viewer, chosen: ContactFilter) -> ContactPage:
    """One page, and whether another follows (one row more is read: no COUNT over a million rows)."""
    dialect = dialect_of(session)
    zone = await zone_of(session, viewer, chosen.project_id)
    page = max(1, min(chosen.page, MAX_PAGE))
    flags = select(func.count()).where(VoiceFlag.contact_id == Contact.id).scalar_subquery()
    nps = (
        select(NpsAnswer.score)
        .join(NpsSurvey, NpsSurvey.id == NpsAnswer.survey_id)
        .where(NpsSurvey.contact_id == Contact.id)
        .scalar_subquery()
    )
    ids = (
        _ordered(contacts_query(viewer, chosen, dialect, zone).add_columns(Contact.id), chosen.sort)
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
        .subquery()
    )
    # The page's ids first (an index walk), then their details: the joins run for 51 rows, not the period.
    query = _named(select(*_listed(dialect), flags, nps, Contact.routed_to).join(ids, ids.c.id == Contact.id))
    rows = [
        ContactRow(
            id=cid,
            project=project,
            submitted_at=submitted,
            promoter=" ".join(p for p in (first_name, last_name) if p) or "—",
            store=str(store or "—"),
            status=str(status),
            verdict=str(verdict) if verdict else None,
            score=score,
            flags=int(flag_count or 0),
            nps=answer,
            routed=routed,
        )
        for (
            cid,
            project,
            submitted,
            first_name,
            last_name,
            store,
            status,
            verdict,
            score,
            flag_count,
            answer,
            routed,
        ) in (await session.execute(query)).all()
    ]
    rows.sort(key=_row_key(chosen.sort))
    return ContactPage(rows=rows[:PAGE_SIZE], page=page, has_next=len(rows) > PAGE_SIZE)


def _row_key(sort: str) -> Any:
    if sort == "old":
        return lambda r: (r.submitted_at, r.id)
    if sort == "score":
        return lambda r: (r.score is None, r.score or 0.0, r.id)
    if sort == "id":
        return lambda r: -r.id
    return lambda r: (-r.submitted_at.timestamp(), -r.id)


# The export's columns: each title is a text key of the console's catalogue (locales/*/console.po), so a
# Russian manager's file has Russian titles; English is the titles' own fallback (web.i18n.translator).
EXPORT_TITLES = (
    "contact",
    "project",
    "export-submitted-utc",
    "promoter",
    "store",
    "status",
    "verdict",
    "score",
    "export-customer-score",
)


async def export_rows(
    connection: AsyncConnection, viewer: Viewer, chosen: ContactFilter, zone: str
) -> AsyncIterator[tuple[Any, ...]]:
    """Every contact of the filtered view, streamed (server-side cursor) for services.exports' sinks."""
    dialect = connection.dialect.name
    query = _ordered(
        _named(contacts_query(viewer, chosen, dialect, zone).add_columns(*_listed(dialect), NpsAnswer.score))
        .outerjoin(NpsSurvey, NpsSurvey.contact_id == Contact.id)
        .outerjoin(NpsAnswer, NpsAnswer.survey_id == NpsSurvey.id),
        chosen.sort,
    ).execution_options(yield_per=5000)
    async for row in await connection.stream(query):
        cid, project, submitted, first_name, last_name, store, status, verdict, score, nps = row
        yield (
            cid,
            project,
            submitted.replace(tzinfo=None),
            " ".join(p for p in (first_name, last_name) if p),
            str(store or "—"),
            str(status),
            str(verdict or ""),
            score,
            nps,
        )


@dataclass(frozen=True)
class Choice:
    id: int
    name: str


@dataclass(frozen=True)
class FilterChoices:
    projects: list[Choice]
    promoters: list[Choice]
    reviewers: list[Choice]


async def filter_choices(session: AsyncSession, viewer: Viewer) -> FilterChoices:
    """The drop-downs: the viewer's projects and their members (a small table, not the contacts)."""
    projects = await session.execute(
        select(Project.id, Project.name).where(_scoped(viewer, Project.id, None)).order_by(Project.name)
    )

    async def members(role: Role) -> list[Choice]:
        rows = await session.execute(
            select(User.id, User.first_name, User.last_name, User.telegram_id)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.role == role, _scoped(viewer, Membership.project_id, None))
            .distinct()
        )
        named = [
            Choice(uid, " ".join(p for p in (first, last) if p) or f"id{tid}")
            for uid, first, last, tid in rows
        ]
        return sorted(named, key=lambda c: c.name.lower())

    return FilterChoices(
        projects=[Choice(pid, name) for pid, name in projects.all()],
        promoters=await members(Role.PROMOTER),
        reviewers=await members(Role.REVIEWER),
    )


# -- one contact -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewLine:
    reviewer: str
    verdict: str
    score: float
    marks: dict[str, Any]
    comment: str | None
    written_at: dt.datetime
    undone: bool
    kind: str


@dataclass(frozen=True)
class AlertLine:
    id: int
    project: str
    kind: str
    status: str
    created_at: dt.datetime
    contact_id: int | None
    taken_by: str | None
    taken_at: dt.datetime | None
    resolved_by: str | None
    resolved_at: dt.datetime | None
    note: str | None


@dataclass
class ContactDetail:
    id: int
    project: str
    project_id: int
    promoter: str
    submitted_at: dt.datetime
    status: str
    verdict: str | None
    score: float | None
    answers: dict[str, Any]
    has_audio: bool
    duration: float
    purged: bool
    flags: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)
    reviews: list[ReviewLine] = field(default_factory=list)
    dispute: tuple[str, str, dt.datetime] | None = None  # reason, status, opened
    nps: tuple[int, str, str | None] | None = None  # score, category, follow-up
    alerts: list[AlertLine] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    routed: str | None = None  # AUTOMATIC, PERSON, or None (never routed: people decide)


def _name(first: str | None, last: str | None) -> str:
    return " ".join(p for p in (first, last) if p) or "—"


async def recording_of(session: AsyncSession, viewer: Viewer, contact_id: int) -> Audio | None:
    """The contact's dialogue recording, if the viewer may hear it (None otherwise, or when purged)."""
    audio: Audio | None = await session.scalar(
        select(Audio)
        .join(Contact, Contact.id == Audio.contact_id)
        .where(
            Audio.contact_id == contact_id,
            Audio.kind == AudioKind.DIALOGUE,
            _scoped(viewer, Contact.project_id, None),
            Contact.personal_data_purged_at.is_(None),
        )
        .order_by(Audio.id)
        .limit(1)
    )
    return audio


async def contact_detail(session: AsyncSession, viewer: Viewer, contact_id: int) -> ContactDetail | None:
    """None for a contact that does not exist or that the viewer may not see: the caller cannot tell which."""
    found = (
        await session.execute(
            select(Contact, Project.name, User.first_name, User.last_name)
            .join(Project, Project.id == Contact.project_id)
            .join(User, User.id == Contact.promoter_id)
            .where(Contact.id == contact_id, _scoped(viewer, Contact.project_id, None))
        )
    ).first()
    if found is None:
        return None
    contact, project, first, last = found
    audio = await recording_of(session, viewer, contact_id)
    detail = ContactDetail(
        id=contact.id,
        project=project,
        project_id=contact.project_id,
        promoter=_name(first, last),
        submitted_at=contact.submitted_at,
        status=str(contact.status),
        verdict=str(contact.final_verdict) if contact.final_verdict else None,
        score=contact.score,
        answers=dict(contact.form_answers or {}),
        has_audio=audio is not None,
        duration=audio.duration_seconds if audio else 0.0,
        purged=contact.personal_data_purged_at is not None,
        routed=contact.routed_to,
    )
    flags = await session.scalars(
        select(VoiceFlag).where(VoiceFlag.contact_id == contact_id).order_by(VoiceFlag.id)
    )
    detail.flags = [(str(f.kind), f.score, f.details.stored()) for f in flags]
    reviews = await session.execute(
        select(Review, Assignment.kind, User.first_name, User.last_name)
        .join(Assignment, Assignment.id == Review.assignment_id)
        .join(User, User.id == Review.reviewer_id)
        .where(Review.contact_id == contact_id)
        .order_by(Review.created_at, Review.id)
    )
    detail.reviews = [
        ReviewLine(
            reviewer=_name(first, last),
            verdict=str(review.verdict),
            score=review.score,
            marks=dict(review.marks or {}),
            comment=review.comment,
            written_at=review.created_at,
            undone=review.undone_at is not None,
            kind=str(kind),
        )
        for review, kind, first, last in reviews.all()
    ]
    dispute = await session.scalar(select(Dispute).where(Dispute.contact_id == contact_id))
    if dispute is not None:
        detail.dispute = (dispute.reason, str(dispute.status), dispute.created_at)
    answer = (
        await session.execute(
            select(NpsAnswer.score, NpsAnswer.category, NpsAnswer.follow_up)
            .join(NpsSurvey, NpsSurvey.id == NpsAnswer.survey_id)
            .where(NpsSurvey.contact_id == contact_id)
        )
    ).first()
    if answer is not None:
        detail.nps = (int(answer[0]), str(answer[1]), answer[2])
    detail.alerts = await _alert_lines(session, viewer, ManagerAlert.contact_id == contact_id, limit=50)
    speech = await session.scalar(
        select(AnalysisTask.speech)
        .join(Audio, Audio.id == AnalysisTask.audio_id)
        .where(Audio.contact_id == contact_id)
        .limit(1)
    )
    if isinstance(speech, dict):
        detail.transcript = [s for s in speech.get("segments", []) if isinstance(s, dict)]
    return detail


# -- alerts ----------------------------------------------------------------------------------------------
async def _alert_lines(session: AsyncSession, viewer: Viewer, where: Any, *, limit: int) -> list[AlertLine]:
    taker, resolver = aliased(User), aliased(User)
    rows = await session.execute(
        select(
            ManagerAlert,
            Project.name,
            taker.first_name,
            taker.last_name,
            resolver.first_name,
            resolver.last_name,
        )
        .join(Project, Project.id == ManagerAlert.project_id)
        .outerjoin(taker, taker.id == ManagerAlert.taken_by_id)
        .outerjoin(resolver, resolver.id == ManagerAlert.resolved_by_id)
        .where(where, _scoped(viewer, ManagerAlert.project_id, None))
        .order_by(ManagerAlert.created_at.desc(), ManagerAlert.id.desc())
        .limit(limit)
    )
    return [
        AlertLine(
            id=alert.id,
            project=project,
            kind=str(alert.kind),
            status=str(alert.status),
            created_at=alert.created_at,
            contact_id=alert.contact_id,
            taken_by=_name(tf, tl) if alert.taken_by_id else None,
            taken_at=alert.taken_at,
            resolved_by=_name(rf, rl) if alert.resolved_by_id else None,
            resolved_at=alert.resolved_at,
            note=alert.resolution_note,
        )
        for alert, project, tf, tl, rf, rl in rows.all()
    ]


async def alert_list(
    session: AsyncSession, viewer: Viewer, *, resolved: bool, project_id: int | None = None, limit: int = 200
) -> list[AlertLine]:
    status = (
        ManagerAlert.status == AlertStatus.RESOLVED
        if resolved
        else ManagerAlert.status.in_([AlertStatus.OPEN, AlertStatus.TAKEN])
    )
    where = and_(status, _scoped(viewer, ManagerAlert.project_id, project_id))
    return await _alert_lines(session, viewer, where, limit=limit)


# -- dashboard -------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Counts of a day, a week, a project, a store or a promoter, and the rates drawn from them."""

    volume: int = 0
    reviewed: int = 0
    approved: int = 0
    rejected: int = 0
    fraud: int = 0
    automatic: int = 0  # decided by speech routing, no person
    sla_breaches: int = 0
    nps_answers: int = 0
    nps_promoters: int = 0
    nps_detractors: int = 0

    @property
    def approval_rate(self) -> float | None:
        return share(self.approved, self.reviewed)

    @property
    def rejection_rate(self) -> float | None:
        return share(self.rejected, self.reviewed)

    @property
    def fraud_rate(self) -> float | None:
        return share(self.fraud, self.reviewed)

    @property
    def automatic_share(self) -> float | None:
        """Of the contacts with a verdict, the share speech routing decided without a person."""
        return share(self.automatic, self.reviewed)

    @property
    def nps(self) -> float | None:
        if not self.nps_answers:
            return None
        return 100.0 * (self.nps_promoters - self.nps_detractors) / self.nps_answers

    def add(self, other: Tally) -> None:
        for name in TALLIED:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def count_answers(self, category: Any, count: int) -> None:
        self.nps_answers += count
        if category == NpsCategory.PROMOTER:
            self.nps_promoters += count
        elif category == NpsCategory.DETRACTOR:
            self.nps_detractors += count


TALLIED = tuple(f.name for f in fields(Tally))


@dataclass
class Day(Tally):
    """A local day, or a week (its Monday) in Dashboard.weeks."""

    day: dt.date = dt.date.min


@dataclass
class Slice(Tally):
    """One project, store or promoter over the dashboard's period."""

    key: str = ""
    label: str = ""


@dataclass(frozen=True)
class Dashboard:
    days: list[Day]
    this_week: Day
    last_week: Day
    zone: str
    weeks: list[Day] = field(default_factory=list)  # Monday-to-Sunday weeks, the current one last
    by_project: list[Slice] = field(default_factory=list)
    by_store: list[Slice] = field(default_factory=list)
    by_promoter: list[Slice] = field(default_factory=list)


WEEKS = 8  # the weekly view: this week and the seven before it
TOP_SLICES = 15  # stores and promoters shown per breakdown, the busiest first


Rolled = dict[int, set[dt.date]]  # per project, the days read from the roll-up (services.console_rollup)
# DashboardDay's sums for the daily view, in Tally's order
ROLLED_DAY = (*console_rollup.VERDICT_FIGURES, *console_rollup.DAY_FIGURES)
ROLLED_SLICE = (
    console_rollup.CONTACT_FIGURES
)  # and for the breakdowns: an answer counts for the contact it rates


def _scope_ids(viewer: Viewer, project_id: int | None) -> list[int]:
    if project_id is not None:
        return [project_id] if project_id in viewer.project_ids else []
    return sorted(viewer.project_ids)


def _live(
    viewer: Viewer,
    project_id: int | None,
    project: Any,
    moment: Any,
    *,
    start: dt.date,
    end: dt.date,
    zone: str,
    rolled: Rolled,
) -> Any:
    """The viewer's projects over the local days [start, end], less the days read from the roll-up: as
    positive UTC ranges on `moment`, grouped by projects that share them, so an index still narrows it."""
    first, last = utc_range(start, end, zone)
    if not rolled:
        return and_(_scoped(viewer, project, project_id), moment >= first, moment < last)
    every = {start + dt.timedelta(days=n) for n in range((end - start).days + 1)}
    groups: dict[tuple[tuple[dt.date, dt.date], ...], list[int]] = defaultdict(list)
    for pid in _scope_ids(viewer, project_id):
        left = tuple(runs(every - rolled.get(pid, set())))
        if left:
            groups[left].append(pid)
    parts = []
    for spans, pids in groups.items():
        ranges = [utc_range(a, b, zone) for a, b in spans]
        parts.append(and_(project.in_(pids), or_(*(and_(moment >= f, moment < t) for f, t in ranges))))
    return or_(*parts) if parts else false()


def _rolled_where(table: Any, rolled: Rolled, start: dt.date, end: dt.date) -> Any | None:
    """A roll-up table's rows of the days in `rolled` within [start, end]; None when there are none."""
    groups: dict[tuple[tuple[dt.date, dt.date], ...], list[int]] = defaultdict(list)
    for pid, days in sorted(rolled.items()):
        spans = tuple(runs(d for d in days if start <= d <= end))
        if spans:
            groups[spans].append(pid)
    if not groups:
        return None
    return or_(
        *(
            and_(table.project_id.in_(pids), or_(*(table.day.between(a, b) for a, b in spans)))
            for spans, pids in groups.items()
        )
    )


async def _daily(
    session: AsyncSession,
    viewer: Viewer,
    start: dt.date,
    end: dt.date,
    *,
    zone: str,
    project_id: int | None,
    rolled: Rolled | None = None,
) -> dict[dt.date, Day]:
    """Every local day in [start, end]: the days in `rolled` summed from the roll-up, the rest in three SQL
    groups over the live rows: contacts by submission, SLA breaches by the card's close, customers' answers
    by the day they answered."""
    rolled = rolled or {}
    dialect = dialect_of(session)
    first, _last = utc_range(start, end, zone)
    table = {
        start + dt.timedelta(days=n): Day(day=start + dt.timedelta(days=n))
        for n in range((end - start).days + 1)
    }

    def live(project: Any, moment: Any) -> Any:
        return _live(viewer, project_id, project, moment, start=start, end=end, zone=zone, rolled=rolled)

    day = day_of(Contact.submitted_at, dialect, zone, first).label("day")
    contacts = await session.execute(
        select(day, func.count(), func.count(Contact.final_verdict), *verdict_sums())
        .where(live(Contact.project_id, Contact.submitted_at))
        .group_by(day)
    )
    for value, *numbers in contacts.all():
        if (row := table.get(as_date(value))) is not None:
            row.add(Tally(*(int(n or 0) for n in numbers)))

    closed = day_of(Assignment.closed_at, dialect, zone, first).label("day")
    breaches = await session.execute(
        select(closed, func.count())
        .join(Contact, Contact.id == Assignment.contact_id)
        .where(Assignment.status == AssignmentStatus.EXPIRED, live(Contact.project_id, Assignment.closed_at))
        .group_by(closed)
    )
    for value, count in breaches.all():
        if (row := table.get(as_date(value))) is not None:
            row.sla_breaches += int(count)

    answered = day_of(NpsAnswer.created_at, dialect, zone, first).label("day")
    answers = await session.execute(
        select(answered, NpsAnswer.category, func.count())
        .join(NpsSurvey, NpsSurvey.id == NpsAnswer.survey_id)
        .where(live(NpsSurvey.project_id, NpsAnswer.created_at))
        .group_by(answered, NpsAnswer.category)
    )
    for value, category, count in answers.all():
        if (row := table.get(as_date(value))) is not None:
            row.count_answers(category, int(count))

    if (where := _rolled_where(DashboardDay, rolled, start, end)) is not None:
        sums = await session.execute(
            select(DashboardDay.day, *(func.sum(getattr(DashboardDay, name)) for name in ROLLED_DAY))
            .where(where)
            .group_by(DashboardDay.day)
        )
        for value, *numbers in sums.all():
            if (row := table.get(as_date(value))) is not None:
                volume, reviewed, approved, rejected, fraud, automatic, breached, answers_, good, bad = (
                    int(n or 0) for n in numbers
                )
                row.add(
                    Tally(
                        volume, reviewed, approved, rejected, fraud, automatic, breached, answers_, good, bad
                    )
                )
    return table


async def dashboard(
    session: AsyncSession,
    viewer: Viewer,
    today: dt.date,
    *,
    days: int = 14,
    project_id: int | None = None,
    rollup: bool = True,
) -> Dashboard:
    """Per local day over the last `days` (at least 14: this week against the one before), per week over
    the last WEEKS, and per project, store and promoter over the `days`. Closed days that the roll-up holds
    fresh in this zone (services.console_rollup) are read from it, the rest (today, stale days, days of a
    project counted in another zone) from the contacts: the same figures either way (`rollup=False` reads
    everything live, as tests/test_console_rollup.py compares)."""
    days = max(days, 14)
    zone = await zone_of(session, viewer, project_id)
    start = today - dt.timedelta(days=days - 1)
    monday = today - dt.timedelta(days=today.weekday())
    weeks_start = monday - dt.timedelta(weeks=WEEKS - 1)
    earliest = min(start, weeks_start)
    rolled: Rolled = {}
    if rollup:
        rolled, _seen = await console_rollup.fresh_days(
            await session.connection(),
            _scope_ids(viewer, project_id),
            earliest,
            today - dt.timedelta(days=1),
            zone,
        )
    table = await _daily(session, viewer, earliest, today, zone=zone, project_id=project_id, rolled=rolled)

    ordered = [table[d] for d in sorted(table) if d >= start]
    this_week, last_week = Day(day=today), Day(day=today - dt.timedelta(days=7))
    for row in ordered[-7:]:
        this_week.add(row)
    for row in ordered[-14:-7]:
        last_week.add(row)
    weeks = [Day(day=weeks_start + dt.timedelta(weeks=n)) for n in range(WEEKS)]
    for day, row in table.items():
        if day >= weeks_start:
            weeks[(day - weeks_start).days // 7].add(row)
    slices = await breakdowns(session, viewer, start, today, zone=zone, project_id=project_id, rolled=rolled)
    return Dashboard(
        days=ordered,
        this_week=this_week,
        last_week=last_week,
        zone=zone,
        weeks=weeks,
        by_project=slices["project"],
        by_store=slices["store"],
        by_promoter=slices["promoter"],
    )


async def breakdowns(
    session: AsyncSession,
    viewer: Viewer,
    start: dt.date,
    end: dt.date,
    *,
    zone: str,
    project_id: int | None = None,
    top: int = TOP_SLICES,
    rolled: Rolled | None = None,
) -> dict[str, list[Slice]]:
    """The period's contacts per project, per store (the form's `store` answer) and per promoter, the
    busiest `top` of each: over the live rows one SQL group by (project, promoter, store), summed here; over
    the roll-up's days one group each of its per-day, per-store and per-promoter sums. A customer's answer
    counts for the contact it rates (the daily view counts it on the day it came)."""
    rolled = rolled or {}
    dialect = dialect_of(session)
    store = func.coalesce(store_of(dialect), NO_STORE)
    # "+ 0": grouped by the bare columns, SQLite walks a (project, promoter, ...) index over every contact
    # to skip a sort (2.3 s for the admin at 1,000,000); as expressions, it reads the period's rows only.
    project, promoter = Contact.project_id + 0, Contact.promoter_id + 0
    grouped = await session.execute(
        select(project, promoter, store, func.count(), func.count(Contact.final_verdict), *verdict_sums())
        .add_columns(*answer_sums())
        .outerjoin(NpsSurvey, NpsSurvey.contact_id == Contact.id)
        .outerjoin(NpsAnswer, NpsAnswer.survey_id == NpsSurvey.id)
        .where(
            _live(
                viewer,
                project_id,
                Contact.project_id,
                Contact.submitted_at,
                start=start,
                end=end,
                zone=zone,
                rolled=rolled,
            )
        )
        .group_by(project, promoter, store)
    )
    by: dict[str, dict[Any, Slice]] = {"project": {}, "store": {}, "promoter": {}}

    def count(kind: str, key: Any, numbers: list[Any]) -> None:
        counts = Tally(*(int(n or 0) for n in numbers[:6]))
        counts.nps_answers, counts.nps_promoters, counts.nps_detractors = (int(n or 0) for n in numbers[6:])
        by[kind].setdefault(key, Slice(key=str(key), label=str(key))).add(counts)

    for pid, uid, shop, *numbers in grouped.all():
        for kind, key in (("project", pid), ("store", str(shop)), ("promoter", uid)):
            count(kind, key, numbers)
    for kind, table, column in (
        ("project", DashboardDay, DashboardDay.project_id),
        ("store", DashboardStoreDay, DashboardStoreDay.store),
        ("promoter", DashboardPromoterDay, DashboardPromoterDay.promoter_id),
    ):
        if (where := _rolled_where(table, rolled, start, end)) is None:
            break
        sums = [func.sum(getattr(table, name)) for name in ROLLED_SLICE]
        for key, *numbers in (
            await session.execute(select(column, *sums).where(where).group_by(column))
        ).all():
            count(kind, str(key) if kind == "store" else int(key), numbers)
    busiest = {
        kind: sorted(found.values(), key=lambda s: (-s.volume, s.label))[:top] for kind, found in by.items()
    }
    if busiest["project"]:
        projects = await session.execute(
            select(Project.id, Project.name).where(Project.id.in_([int(s.key) for s in busiest["project"]]))
        )
        names: dict[int, str] = {pid: name for pid, name in projects.all()}
        for item in busiest["project"]:
            item.label = names.get(int(item.key), item.key)
    if busiest["promoter"]:
        people = await session.execute(
            select(User.id, User.first_name, User.last_name).where(
                User.id.in_([int(s.key) for s in busiest["promoter"]])
            )
        )
        named = {uid: _name(first_name, last_name) for uid, first_name, last_name in people.all()}
        for item in busiest["promoter"]:
            item.label = named.get(int(item.key), item.key)
    for kind in ("project", "promoter"):
        busiest[kind].sort(key=lambda s: (-s.volume, s.label.lower()))
    return busiest


# -- reviewers -------------------------------------------------------------------------------------------
@dataclass
class ReviewerLine:
    user_id: int
    name: str
    open_cards: int = 0
    reviews: int = 0
    approvals: int = 0
    mean_minutes: float | None = None
    kappa: float | None = None
    kappa_pairs: int = 0


def _minutes_between(dialect: str, start: Any, end: Any) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", end - start) / 60.0
    return (func.julianday(end) - func.julianday(start)) * 1440.0


async def reviewer_lines(
    session: AsyncSession, viewer: Viewer, today: dt.date, *, days: int = 30, project_id: int | None = None
) -> list[ReviewerLine]:
    """Load (open cards now), reviews and mean minutes from card to verdict in the period, and each one's
    verdict kappa on the blind calibration samples (services.reviewer_agreement)."""
    dialect = dialect_of(session)
    zone = await zone_of(session, viewer, project_id)
    first, last = utc_range(today - dt.timedelta(days=days - 1), today, zone)
    scope = _scoped(viewer, Contact.project_id, project_id)
    lines: dict[int, ReviewerLine] = {}
    members = await session.execute(
        select(User.id, User.first_name, User.last_name)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.role == Role.REVIEWER,
            Membership.is_active.is_(True),
            _scoped(viewer, Membership.project_id, project_id),
        )
        .distinct()
    )
    for uid, first_name, last_name in members.all():
        lines[uid] = ReviewerLine(uid, _name(first_name, last_name))
    done = await session.execute(
        select(
            Review.reviewer_id,
            func.count(),
            func.sum(case((Review.verdict == Verdict.APPROVE, 1), else_=0)),
            func.avg(_minutes_between(dialect, Assignment.assigned_at, Review.created_at)),
        )
        .join(Contact, Contact.id == Review.contact_id)
        .join(Assignment, Assignment.id == Review.assignment_id)
        .where(scope, Review.undone_at.is_(None), Review.created_at >= first, Review.created_at < last)
        .group_by(Review.reviewer_id)
    )
    for uid, count, approvals, minutes in done.all():
        line = lines.setdefault(uid, ReviewerLine(uid, "—"))
        line.reviews, line.approvals = int(count), int(approvals or 0)
        line.mean_minutes = float(minutes) if minutes is not None else None
    open_cards = await session.execute(
        select(Assignment.reviewer_id, func.count())
        .join(Contact, Contact.id == Assignment.contact_id)
        .where(scope, Assignment.status == AssignmentStatus.OPEN, Assignment.reviewer_id.is_not(None))
        .group_by(Assignment.reviewer_id)
    )
    for uid, count in open_cards.all():
        lines.setdefault(uid, ReviewerLine(uid, "—")).open_cards = int(count)
    project_ids = [project_id] if project_id in viewer.project_ids else sorted(viewer.project_ids)
    weighted: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for pid in project_ids:
        agreed = await agreement(session, pid, since=first, until=last)
        for uid, kappa in agreed.verdict_kappa_by_reviewer.items():
            if kappa is not None:
                weighted[uid].append((kappa, agreed.pairs_by_reviewer.get(uid, 0)))
    for uid, values in weighted.items():
        line = lines.setdefault(uid, ReviewerLine(uid, "—"))
        line.kappa_pairs = sum(n for _k, n in values)
        if line.kappa_pairs:
            line.kappa = sum(k * n for k, n in values) / line.kappa_pairs
    unnamed = [uid for uid, line in lines.items() if line.name == "—"]
    if unnamed:
        for uid, first_name, last_name in await session.execute(
            select(User.id, User.first_name, User.last_name).where(User.id.in_(unnamed))
        ):
            lines[uid].name = _name(first_name, last_name)
    return sorted(lines.values(), key=lambda line: (-line.reviews, line.name.lower()))


def local_time(moment: dt.datetime | None, zone: str) -> str:
    """A stored UTC moment as the zone's wall clock, for the pages."""
    if moment is None:
        return "—"
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


# -- a client contact's page -----------------------------------------------------------------------------
CLIENT_MONTHS = (3, 6, 12)


def client_scope(viewer: Viewer) -> frozenset[int]:
    """The projects whose billing and NPS the viewer may see: a client contact's own, and a manager's."""
    return viewer.project_ids | viewer.client_project_ids


@dataclass
class Month:
    month: dt.date  # its first day
    validated: int = 0  # what the client pays for (services.billing: approved, not under dispute)
    nps_answers: int = 0
    nps_promoters: int = 0
    nps_passives: int = 0
    nps_detractors: int = 0

    @property
    def nps(self) -> float | None:
        if not self.nps_answers:
            return None
        return 100.0 * (self.nps_promoters - self.nps_detractors) / self.nps_answers


@dataclass(frozen=True)
class ClientView:
    projects: list[Choice]  # the projects counted
    months: list[Month]  # oldest first, the current (partial) month last
    stores: list[tuple[str, int]]  # validated contacts per store over the months, most first
    zone: str

    @property
    def total(self) -> Month:
        whole = Month(self.months[0].month if self.months else dt.date.min)
        for month in self.months:
            for name in ("validated", "nps_answers", "nps_promoters", "nps_passives", "nps_detractors"):
                setattr(whole, name, getattr(whole, name) + getattr(month, name))
        return whole


def _month_start(day: dt.date, back: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 - back
    return dt.date(index // 12, index % 12 + 1, 1)


async def client_view(
    session: AsyncSession, viewer: Viewer, now: dt.datetime, *, months: int = 6, project_id: int | None = None
) -> ClientView:
    """Billing (validated contacts per month and per store, read as services.billing reads it: roll-ups
    where fresh) and the customers' NPS per month, for the viewer's client projects or one of them. No
    promoter, reviewer or customer is named: a client sees their campaigns, not the agency's people."""
    scope = client_scope(viewer)
    wanted = select(Project).order_by(Project.id)
    if project_id is not None:
        wanted = wanted.where(Project.id == project_id, Project.id.in_(sorted(scope)))
    elif not viewer.is_admin:
        wanted = wanted.where(Project.id.in_(sorted(scope)))
    projects = list(await session.scalars(wanted))
    zone = projects[0].timezone if projects else "UTC"
    today = now.astimezone(ZoneInfo(zone)).date()
    first_month = _month_start(today, months - 1)
    table = {_month_start(today, back): Month(_month_start(today, back)) for back in range(months)}
    stores: dict[str, int] = defaultdict(int)
    connection = await session.connection()
    for project in projects:
        own_today = now.astimezone(ZoneInfo(project.timezone)).date()
        counted = await billing_counts(connection, project, first_month, own_today)
        for (day, _promoter, shop), validated in counted.items():
            if (month := table.get(_month_start(day))) is not None:
                month.validated += validated
                stores[shop] += validated
    if projects:
        dialect = dialect_of(session)
        first, last = utc_range(first_month, today, zone)
        answered = day_of(NpsAnswer.created_at, dialect, zone, first).label("day")
        answers = await session.execute(
            select(answered, NpsAnswer.category, func.count())
            .join(NpsSurvey, NpsSurvey.id == NpsAnswer.survey_id)
            .where(
                NpsSurvey.project_id.in_([p.id for p in projects]),
                NpsAnswer.created_at >= first,
                NpsAnswer.created_at < last,
            )
            .group_by(answered, NpsAnswer.category)
        )
        for value, category, count in answers.all():
            if (month := table.get(_month_start(as_date(value)))) is None:
                continue
            month.nps_answers += int(count)
            if category == NpsCategory.PROMOTER:
                month.nps_promoters += int(count)
            elif category == NpsCategory.DETRACTOR:
                month.nps_detractors += int(count)
            else:
                month.nps_passives += int(count)
    return ClientView(
        projects=[Choice(p.id, p.name) for p in projects],
        months=[table[m] for m in sorted(table)],
        stores=sorted(stores.items(), key=lambda item: (-item[1], item[0])),
        zone=zone,
    )


async def client_choices(session: AsyncSession, viewer: Viewer) -> FilterChoices:
    """The client page's project drop-down (no people in it)."""
    query = select(Project.id, Project.name).order_by(Project.name)
    if not viewer.is_admin:
        query = query.where(Project.id.in_(sorted(client_scope(viewer))))
    projects = [Choice(pid, name) for pid, name in (await session.execute(query)).all()]
    return FilterChoices(projects=projects, promoters=[], reviewers=[])
