"""The managers' daily digest: yesterday's figures against the 7 days before, and a 14-day chart.

Figures are computed over the project's local day. The digest log (one row per project and day, inserted
in the same transaction as the outbox messages) makes sending exactly-once per project per day; the one
remaining at-least-once step is the outbox itself (docs/architecture.md).
"""

from __future__ import annotations

import datetime as dt
import io
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.sql import dialect_of, insert_ignore
from models import (
    AlertStatus,
    Contact,
    DigestLog,
    Dispute,
    FlagKind,
    ManagerAlert,
    Project,
    Review,
    User,
    Verdict,
    VoiceFlag,
)
from models.base import utcnow
from models.payloads import DigestFigures, LoggedAudit, LoggedCapacity, LoggedCriterionAudit, LoggedDay
from services.automatic import AuditReview, review_audit
from services.capacity import Capacity, capacity
from services.period_queries import reviews_in, sla_breaches_in, submitted_in
from services.rates import share
from services.reviewer_agreement import agreement
from services.scorecard import scorecard_of
from services.speech.routing import RESTORE, RETURN
from services.surveys import nps_figures

TREND_DAYS = 14
BASELINE_DAYS = 7
RANK_MIN_REVIEWED = 5  # a promoter needs this many reviewed contacts in 7 days to be ranked
RANK_SIZE = 5
KAPPA_DAYS = 30
LATE_AFTER = dt.timedelta(hours=1)


def local_day(project: Project, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a local calendar day, in UTC."""
    zone = ZoneInfo(project.timezone)
    start = dt.datetime.combine(day, dt.time(0), zone)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


@dataclass
class DayFigures:
    # Counts for one day; floats because the baseline is a mean of days.
    received: float = 0
    reviewed: float = 0
    approved: float = 0
    rejected: float = 0
    fraud: float = 0
    average_score: float | None = None
    median_minutes_to_verdict: float | None = None
    sla_breaches: float = 0
    flags: dict[str, int] = field(default_factory=dict)

    @property
    def approval_rate(self) -> float | None:
        return share(self.approved, self.reviewed)

    @property
    def fraud_rate(self) -> float | None:
        return share(self.fraud, self.reviewed)


async def day_figures(
    session: AsyncSession, project: Project, start: dt.datetime, end: dt.datetime, *, median: bool = True
) -> DayFigures:
    """The figures of [start, end); the median time to verdict (one sort in the database) only when asked."""
    figures = DayFigures()
    figures.received = int(
        await session.scalar(
            select(func.count()).select_from(Contact).where(submitted_in(project.id, start, end))
        )
        or 0
    )
    # Aggregated in the database: a day of a big project is tens of thousands of reviews.
    by_verdict = (
        await session.execute(
            reviews_in(project, start, end, Review.verdict, func.count(), func.avg(Review.score)).group_by(
                Review.verdict
            )
        )
    ).all()
    counts = {Verdict(verdict): int(n) for verdict, n, _avg in by_verdict}
    figures.reviewed = sum(counts.values())
    figures.approved = counts.get(Verdict.APPROVE, 0)
    figures.rejected = counts.get(Verdict.REJECT, 0)
    figures.fraud = counts.get(Verdict.FRAUD, 0)
    if figures.reviewed:
        figures.average_score = sum(float(avg) * int(n) for _v, n, avg in by_verdict) / figures.reviewed
        if median:
            figures.median_minutes_to_verdict = await _median_minutes(
                session, project, start, end, int(figures.reviewed)
            )
    figures.sla_breaches = int(await session.scalar(sla_breaches_in(project, start, end, func.count())) or 0)
    rows = await session.execute(
        select(VoiceFlag.kind, func.count())
        .join(Contact, Contact.id == VoiceFlag.contact_id)
        .where(submitted_in(project.id, start, end))
        .group_by(VoiceFlag.kind)
    )
    figures.flags = {str(kind): int(n) for kind, n in rows.all()}
    return figures


@dataclass
class PromoterRank:
    name: str
    reviewed: int
    approval_rate: float


@dataclass
class CriterionFigures:
    key: str
    text: dict[str, str]  # the criterion's own words per language
    average: float  # mean mark as a share of its maximum
    pass_rate: float  # share of reviews where it was not failed


@dataclass
class Digest:
    project_id: int
    project_name: str
    day: dt.date
    late: bool
    today: DayFigures
    baseline: DayFigures  # the mean of the BASELINE_DAYS days before
    top: list[PromoterRank]
    bottom: list[PromoterRank]
    nps: float | None
    nps_responses: int
    verbatims: list[tuple[str, str]]
    open_alerts: int
    trend: list[tuple[dt.date, DayFigures]]
    disputes_opened: int = 0
    disputes_resolved: int = 0
    reviewer_counts: list[tuple[str, int]] = field(default_factory=list)  # reviews written that day
    criteria: list[CriterionFigures] = field(default_factory=list)  # the day's marks per criterion
    flag_precision: list[tuple[str, int, int]] = field(default_factory=list)  # (flag, flagged, confirmed)
    open_clusters: int = 0  # repeated-voice clusters with a contact still waiting for its verdict
    promoter_tally: dict[int, tuple[int, int]] = field(default_factory=dict)  # the day's (reviewed, approved)
    kappa: list[tuple[str, float | None, int]] = field(
        default_factory=list
    )  # (reviewer, kappa, pairs), 30 days
    capacity: Capacity | None = None  # the day's routing and the queue at build time (services/capacity.py)
    # reviewers' audit verdicts against the machine's, and criteria changing hands (routing on only)
    audit: AuditReview | None = None

    def figures(self) -> DigestFigures:
        """What the digest log keeps."""
        return DigestFigures(
            day=self.day,
            late=self.late,
            today=LoggedDay(**asdict(self.today)),
            promoters=dict(self.promoter_tally),
            baseline=LoggedDay(**asdict(self.baseline)),
            nps=self.nps,
            nps_responses=self.nps_responses,
            open_alerts=self.open_alerts,
            disputes_opened=self.disputes_opened,
            disputes_resolved=self.disputes_resolved,
            reviewers=self.reviewer_counts,
            capacity=LoggedCapacity(**asdict(self.capacity)) if self.capacity is not None else None,
            audit=_logged_audit(self.audit),
        )


def _logged_audit(audit: AuditReview | None) -> LoggedAudit | None:
    if audit is None:
        return None
    overall = audit.overall
    return LoggedAudit(
        days=audit.days,
        bar=audit.bar,
        min_pairs=audit.min_pairs,
        pairs=overall.pairs,
        agreement=overall.agreement,
        kappa=overall.kappa,
        precision=overall.precision,
        recall=overall.recall,
        criteria=[
            LoggedCriterionAudit(key=c.key, pairs=c.pairs, agreement=c.agreement, returned=c.returned)
            for c in audit.criteria
        ],
        returned=[c.criterion for c in audit.changes if c.change == RETURN],
        restored=[c.criterion for c in audit.changes if c.change == RESTORE],
    )


def _mean(days: list[DayFigures]) -> DayFigures:
    if not days:
        return DayFigures()
    n = len(days)
    scores = [d.average_score for d in days if d.average_score is not None]
    return DayFigures(
        received=round(sum(d.received for d in days) / n, 1),
        reviewed=round(sum(d.reviewed for d in days) / n, 1),
        approved=round(sum(d.approved for d in days) / n, 1),
        rejected=round(sum(d.rejected for d in days) / n, 1),
        fraud=round(sum(d.fraud for d in days) / n, 1),
        average_score=statistics.fmean(scores) if scores else None,
        sla_breaches=round(sum(d.sla_breaches for d in days) / n, 1),
    )


async def _tally(
    session: AsyncSession, project: Project, start: dt.datetime, end: dt.datetime
) -> dict[int, tuple[int, int]]:
    """Reviews written in [start, end), per promoter: (reviewed, approved)."""
    approved = func.sum(case((Review.verdict == Verdict.APPROVE, 1), else_=0))
    grouped = reviews_in(project, start, end, Contact.promoter_id, func.count(), approved).group_by(
        Contact.promoter_id
    )
    return {int(pid): (int(n), int(ok or 0)) for pid, n, ok in (await session.execute(grouped)).all()}


async def _ranks(session: AsyncSession, tally: dict[int, tuple[int, int]]) -> list[PromoterRank]:
    ranked_ids = [pid for pid, (n, _ok) in tally.items() if n >= RANK_MIN_REVIEWED]
    names = {u.id: u.display_name for u in await session.scalars(select(User).where(User.id.in_(ranked_ids)))}
    ranked = [
        PromoterRank(names.get(pid, "?"), tally[pid][0], tally[pid][1] / tally[pid][0]) for pid in ranked_ids
    ]
    return sorted(ranked, key=lambda r: (-r.approval_rate, -r.reviewed, r.name))


def _logged_day(figures: DigestFigures | None) -> DayFigures | None:
    """A day's figures as its digest logged them; None when missing or from an older shape."""
    today = figures.today if figures else None
    return DayFigures(**today.model_dump()) if today is not None else None


async def build_digest(
    session: AsyncSession,
    project: Project,
    day: dt.date,
    *,
    late: bool = False,
    now: dt.datetime | None = None,
) -> Digest:
    """`now`: when the queue's capacity is measured (services/capacity.py); the clock by default."""
    # Days already reported are read back from the digest log (each day's figures as its digest gave
    # them): in steady state a digest computes one day, not fourteen.
    first_day = day - dt.timedelta(days=TREND_DAYS - 1)
    logged = {
        row.digest_date: row.figures
        for row in await session.scalars(
            select(DigestLog).where(
                DigestLog.project_id == project.id,
                DigestLog.digest_date >= first_day,
                DigestLog.digest_date < day,
            )
        )
    }
    trend = []
    for offset in range(TREND_DAYS - 1, -1, -1):
        d = day - dt.timedelta(days=offset)
        cached = _logged_day(logged.get(d)) if d != day else None
        trend.append(
            (d, cached or await day_figures(session, project, *local_day(project, d), median=d == day))
        )
    today = trend[-1][1]
    baseline = _mean([f for _, f in trend[-1 - BASELINE_DAYS : -1]])
    start, end = local_day(project, day)
    week = [day - dt.timedelta(days=n) for n in range(1, BASELINE_DAYS)]
    tally = await _tally(session, project, start, end)
    logged_tallies = [logged[d].promoters if d in logged else None for d in week]
    if all(t is not None for t in logged_tallies):
        week_tally = dict(tally)
        for day_tally in logged_tallies:
            for pid, (n, ok) in (day_tally or {}).items():
                before = week_tally.get(pid, (0, 0))
                week_tally[pid] = (before[0] + n, before[1] + ok)
    else:
        week_start = local_day(project, week[-1])[0]
        week_tally = await _tally(session, project, week_start, end)
    ranks = await _ranks(session, week_tally)
    nps_rows = await nps_figures(session, project.id, start, end, verbatims=3)
    open_alerts = int(
        await session.scalar(
            select(func.count())
            .select_from(ManagerAlert)
            .where(ManagerAlert.project_id == project.id, ManagerAlert.status != AlertStatus.RESOLVED)
        )
        or 0
    )
    nps_row = nps_rows[0] if nps_rows else None
    opened, resolved = await _disputes(session, project, start, end)
    return Digest(
        project_id=project.id,
        project_name=project.name,
        day=day,
        late=late,
        today=today,
        baseline=baseline,
        top=ranks[:RANK_SIZE],
        bottom=list(reversed(ranks[-RANK_SIZE:])) if len(ranks) > RANK_SIZE else [],
        nps=nps_row.nps if nps_row else None,
        nps_responses=nps_row.responses if nps_row else 0,
        verbatims=nps_row.verbatims if nps_row else [],
        open_alerts=open_alerts,
        trend=trend,
        disputes_opened=opened,
        disputes_resolved=resolved,
        reviewer_counts=await _reviewer_counts(session, project, start, end),
        promoter_tally=tally,
        criteria=await _criteria(session, project, start, end),
        flag_precision=await _flag_precision(session, project),
        open_clusters=await _open_clusters(session, project),
        kappa=await _kappa(session, project, end - dt.timedelta(days=KAPPA_DAYS), end),
        capacity=await capacity(session, project, start, end, now=now),
        audit=await review_audit(session, project, end),
    )


async def _criteria(
    session: AsyncSession, project: Project, start: dt.datetime, end: dt.datetime
) -> list[CriterionFigures]:
    """Mean mark and pass rate per criterion of the day's reviews, in one grouped query."""
    criteria = scorecard_of(project.scorecard).criteria
    columns = []
    for criterion in criteria:
        mark = Review.marks[criterion.key].as_float()
        columns += [func.avg(mark), func.avg(case((mark.is_(None), None), (mark > 0, 1.0), else_=0.0))]
    row = (await session.execute(reviews_in(project, start, end, *columns))).one()
    found = []
    for index, criterion in enumerate(criteria):
        average, passed = row[2 * index], row[2 * index + 1]
        if average is not None:
            found.append(
                CriterionFigures(
                    criterion.key,
                    {str(k): v for k, v in criterion.text.items()},
                    float(average) / criterion.max,
                    float(passed),
                )
            )
    return found


async def _flag_precision(session: AsyncSession, project: Project) -> list[tuple[str, int, int]]:
    """How often reviewers confirmed each automatic flag over the project's last 500 reviewed contacts."""
    from services.voice.quality import flag_quality  # noqa: PLC0415  numpy voice stack: the digest's bot process stays light

    return [(q.kind, q.flagged, q.confirmed) for q in await flag_quality(session, project.id) if q.flagged]


async def _open_clusters(session: AsyncSession, project: Project) -> int:
    return int(
        await session.scalar(
            select(func.count(func.distinct(VoiceFlag.cluster_key)))
            .join(Contact, Contact.id == VoiceFlag.contact_id)
            .where(
                Contact.project_id == project.id,
                VoiceFlag.kind == FlagKind.REPEATED_CUSTOMER,
                VoiceFlag.cluster_key.is_not(None),
                Contact.final_verdict.is_(None),
            )
        )
        or 0
    )


async def _kappa(
    session: AsyncSession, project: Project, start: dt.datetime, end: dt.datetime
) -> list[tuple[str, float | None, int]]:
    """Each reviewer's verdict agreement beyond chance on contacts reviewed twice (blind calibration
    samples) in the last KAPPA_DAYS days."""
    found = await agreement(session, project.id, since=start, until=end)
    if not found.pairs:
        return []
    names = {
        u.id: u.display_name
        for u in await session.scalars(select(User).where(User.id.in_(list(found.verdict_kappa_by_reviewer))))
    }
    return sorted(
        (
            (names.get(r, "?"), k, found.pairs_by_reviewer.get(r, 0))
            for r, k in found.verdict_kappa_by_reviewer.items()
        ),
        key=lambda item: item[0],
    )


async def _median_minutes(
    session: AsyncSession, project: Project, start: dt.datetime, end: dt.datetime, count: int
) -> float:
    """The middle duration from submission to review, sorted by the database (no rows fetched)."""
    if dialect_of(session) == "postgresql":
        seconds: Any = func.extract("epoch", Review.created_at - Contact.submitted_at)
    else:
        seconds = (func.julianday(Review.created_at) - func.julianday(Contact.submitted_at)) * 86400.0
    ordered = reviews_in(project, start, end, seconds.label("s")).order_by(seconds)
    middle = [
        float(v) for v in (await session.scalars(ordered.offset((count - 1) // 2).limit(2 - count % 2)))
    ]
    return statistics.fmean(middle) / 60 if middle else 0.0


@dataclass
class OpenFlag:
    contact_id: int
    promoter: str
    kinds: list[str]


async def open_flags(session: AsyncSession, project: Project, day: dt.date) -> list[OpenFlag]:
    """The day's contacts that carry automatic flags and have no final verdict yet: what to look at first."""
    start, end = local_day(project, day)
    rows = (
        await session.execute(
            select(Contact.id, User, VoiceFlag.kind)
            .join(VoiceFlag, VoiceFlag.contact_id == Contact.id)
            .join(User, User.id == Contact.promoter_id)
            .where(submitted_in(project.id, start, end), Contact.final_verdict.is_(None))
            .order_by(Contact.id)
        )
    ).all()
    found: dict[int, OpenFlag] = {}
    for contact_id, user, kind in rows:
        entry = found.setdefault(contact_id, OpenFlag(contact_id, user.display_name, []))
        if str(kind) not in entry.kinds:
            entry.kinds.append(str(kind))
    return list(found.values())


async def _disputes(
    session: AsyncSession, project: Project, start: dt.datetime, end: dt.datetime
) -> tuple[int, int]:
    def count(column: Any) -> Any:
        return (
            select(func.count())
            .select_from(Dispute)
            .join(Contact, Contact.id == Dispute.contact_id)
            .where(Contact.project_id == project.id, column >= start, column < end)
        )

    return int(await session.scalar(count(Dispute.created_at)) or 0), int(
        await session.scalar(count(Dispute.resolved_at)) or 0
    )


async def _reviewer_counts(
    session: AsyncSession, project: Project, start: dt.datetime, end: dt.datetime
) -> list[tuple[str, int]]:
    """Each reviewer's reviews that day, busiest first: throughput at a glance."""
    rows = (
        await session.execute(
            reviews_in(project, start, end, User, func.count(Review.id))
            .join(User, User.id == Review.reviewer_id)
            .group_by(User.id)
            .order_by(func.count(Review.id).desc(), User.id)
        )
    ).all()
    return [(user.display_name, int(n)) for user, n in rows]


def due_day(project: Project, now: dt.datetime) -> tuple[dt.date, bool] | None:
    """(the day the digest is about, whether it is late) once the project's digest time has passed today;
    None for a day that ended before the project was created: a project set up this evening gets no "late"
    digest about yesterday, when it did not exist."""
    zone = ZoneInfo(project.timezone)
    local = now.astimezone(zone)
    if local.time() < project.digest_time:
        return None
    day = local.date() - dt.timedelta(days=1)
    if project.created_at.astimezone(zone).date() > day:
        return None
    planned = dt.datetime.combine(local.date(), project.digest_time, local.tzinfo)
    return day, local - planned > LATE_AFTER


async def claim_day(session: AsyncSession, digest: Digest, recipients: list[int]) -> bool:
    """Record the digest as sent (in the caller's transaction, with its outbox rows); False if it was."""
    now = utcnow()
    return await insert_ignore(
        session,
        DigestLog,
        {
            "project_id": digest.project_id,
            "digest_date": digest.day,
            "figures": digest.figures(),
            "recipients": recipients,
            "created_at": now,
            "updated_at": now,
        },
        ["project_id", "digest_date"],
    )


async def already_sent(session: AsyncSession, project_id: int, day: dt.date) -> bool:
    found = await session.scalar(
        select(DigestLog.id).where(DigestLog.project_id == project_id, DigestLog.digest_date == day)
    )
    return found is not None


APPROVAL_COLOUR, FRAUD_COLOUR, VOLUME_COLOUR = "#2ca02c", "#d62728", "#9ecae1"


def chart_series(digest: Digest) -> dict[str, list[float]]:
    """The chart's three series, day by day over the trend: contacts, approval and fraud rate (percent;
    NaN where nothing was reviewed, drawn as a gap)."""
    nan = float("nan")
    return {
        "contacts": [f.received for _, f in digest.trend],
        "approval": [f.approval_rate * 100 if f.approval_rate is not None else nan for _, f in digest.trend],
        "fraud": [f.fraud_rate * 100 if f.fraud_rate is not None else nan for _, f in digest.trend],
    }


def chart_png(digest: Digest, labels: dict[str, str]) -> bytes:
    """14-day trend, readable on a phone: contacts as bars, approval and fraud rates as lines."""
    import matplotlib  # noqa: PLC0415  matplotlib: heavy, only for the chart

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415  matplotlib: heavy, only for the chart
    from matplotlib.ticker import PercentFormatter  # noqa: PLC0415  matplotlib: heavy, only for the chart

    series = chart_series(digest)
    days, received, approval, fraud = (
        list(range(len(digest.trend))),
        series["contacts"],
        series["approval"],
        series["fraud"],
    )
    figure, volume_axis = plt.subplots(figsize=(7.2, 4.8), dpi=150)
    try:
        volume_axis.bar(days, received, color=VOLUME_COLOUR, label=labels["contacts"])
        volume_axis.set_ylabel(labels["contacts"], fontsize=12)
        rate_axis = volume_axis.twinx()
        rate_axis.plot(
            days, approval, color=APPROVAL_COLOUR, marker="o", linewidth=2.5, label=labels["approval"]
        )
        rate_axis.plot(days, fraud, color=FRAUD_COLOUR, marker="s", linewidth=2.5, label=labels["fraud"])
        rate_axis.set_ylim(0, 100)
        rate_axis.yaxis.set_major_formatter(PercentFormatter())
        volume_axis.set_title(labels["title"], fontsize=14)
        volume_axis.tick_params(axis="x", labelrotation=45, labelsize=10)
        volume_axis.set_xticks(days, [d.strftime("%d.%m") for d, _ in digest.trend])
        handles = volume_axis.get_legend_handles_labels()[0] + rate_axis.get_legend_handles_labels()[0]
        names = volume_axis.get_legend_handles_labels()[1] + rate_axis.get_legend_handles_labels()[1]
        volume_axis.legend(handles, names, loc="upper left", fontsize=10)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)
