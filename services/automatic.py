"""Automatic decisions (issue #25 item 4): before a dispatch round gives queued contacts to reviewers, the
contacts of a project that turned speech routing on, whose analysis holds a speech report, are routed by
services.speech.routing: the clear ones get the machine's verdict, the rest go to people as before.

An automatic verdict is stored as a reviewer's primary verdict is (contact.final_verdict, reviewed_at,
status REVIEWED), so billing, disputes, the rejection-streak alert and the promoter's results work on it
unchanged, with no review row (no reviewer wrote one) and contact.routed_to == "automatic" to say so.
A contact routed to a person keeps its status and is marked routed_to == "person", with the reasons
kept in its analysis's speech report ("routing") for the card and the audit comparison.

The audit share's reviews are compared with the machine's leaning and checks (`audit_agreement`); the
daily digest reviews them per criterion (`review_audit`) and, in the transaction that claims its day,
hands a criterion below the project's bar back to people or brings one back that agrees again
(`record_changes`, models.CriterionReturn); `restore_criterion` is a manager's way back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    AnalysisState,
    AnalysisTask,
    Assignment,
    AssignmentKind,
    Audio,
    Contact,
    ContactStatus,
    CriterionReturn,
    Dispute,
    Project,
    Review,
    Verdict,
    VoiceFlag,
)
from models.base import utcnow
from services.reviewer_agreement import cohen_kappa
from services.scorecard import scorecard_of
from services.speech.routing import (
    AUTOMATIC,
    PERSON,
    RESTORE,
    RETURN,
    CriterionChange,
    Routing,
    RoutingRules,
    judge_criteria,
    route,
)

log = structlog.get_logger(__name__)

ROUND_LIMIT = 500  # contacts routed per project and dispatch round; the rest wait for the next one
AUDIT_DAYS = 30  # the audit comparison in the digest reads the audit pairs of this many days


@dataclass
class AutomaticDecision:
    contact: Contact
    verdict: Verdict
    speech: dict[str, Any]  # the report it rests on (checks for the promoter's feedback)


async def _routable(session: AsyncSession, project: Project) -> list[tuple[Contact, AnalysisTask]]:
    """Queued, not routed yet, with a finished analysis that holds a speech report."""
    rows = await session.execute(
        select(Contact, AnalysisTask)
        .join(Audio, Audio.contact_id == Contact.id)
        .join(AnalysisTask, AnalysisTask.audio_id == Audio.id)
        .where(
            Contact.project_id == project.id,
            Contact.status == ContactStatus.QUEUED,
            Contact.routed_to.is_(None),
            AnalysisTask.state == AnalysisState.DONE,
            AnalysisTask.speech.is_not(None),
        )
        .order_by(Contact.queued_at, Contact.id)
        .limit(ROUND_LIMIT)
    )
    return [(contact, task) for contact, task in rows.tuples()]


async def _flags(session: AsyncSession, contact_ids: list[int]) -> dict[int, list[str]]:
    kinds: dict[int, list[str]] = {}
    for contact_id, kind in await session.execute(
        select(VoiceFlag.contact_id, VoiceFlag.kind)
        .where(VoiceFlag.contact_id.in_(contact_ids))
        .order_by(VoiceFlag.id)
    ):
        kinds.setdefault(contact_id, []).append(str(kind))
    return kinds


async def contacts_before(session: AsyncSession, contact: Contact) -> int:
    """How many contacts the promoter reported in the project before this one."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Contact)
            .where(
                Contact.project_id == contact.project_id,
                Contact.promoter_id == contact.promoter_id,
                Contact.id < contact.id,
            )
        )
        or 0
    )


async def route_queued(
    session: AsyncSession, project: Project, *, now: dt.datetime | None = None
) -> list[AutomaticDecision]:
    """One routing round for a project (nothing when its routing is off); returns the contacts decided
    automatically, for the caller to tell their promoters."""
    rules = RoutingRules.from_settings(project.speech_settings)
    if not rules.enabled:
        return []
    now = now or utcnow()
    pending = await _routable(session, project)
    if not pending:
        return []
    ids = [contact.id for contact, _ in pending]
    returned = await returned_criteria(session, project.id)
    flags = await _flags(session, ids)
    disputed = set(await session.scalars(select(Dispute.contact_id).where(Dispute.contact_id.in_(ids))))
    decided: list[AutomaticDecision] = []
    for contact, task in pending:
        speech = dict(task.speech or {})
        routing = route(
            contact_id=contact.id,
            speech=speech,
            flags=flags.get(contact.id, []),
            disputed=contact.id in disputed,
            promoter_contacts_before=await contacts_before(session, contact),
            rules=rules,
            returned=returned,
        )
        task.speech = {**speech, "routing": routing.as_dict()}
        if routing.route == PERSON:
            contact.routed_to = PERSON
            continue
        decided.append(_decide(contact, routing, speech, now))
    await session.flush()
    log.info("contacts_routed", project_id=project.id, routed=len(pending), automatic=len(decided))
    return decided


def _decide(
    contact: Contact, routing: Routing, speech: dict[str, Any], now: dt.datetime
) -> AutomaticDecision:
    assert routing.route == AUTOMATIC and routing.verdict is not None
    verdict = Verdict(routing.verdict)
    # The status machine's path for a decided contact (queued -> in review -> reviewed), in one flush.
    contact.transition_to(ContactStatus.IN_REVIEW)
    contact.transition_to(ContactStatus.REVIEWED)
    contact.final_verdict, contact.reviewed_at, contact.routed_to = verdict, now, AUTOMATIC
    contact.calibration = False  # a second, blind review compares two people; the audit share does this
    return AutomaticDecision(contact, verdict, speech)


# -- how reviewers' audit verdicts agree with the automatic ones ----------------------------------------
@dataclass(frozen=True)
class AuditPair:
    """One contact of the audit share: the machine's leaning and checks, and the reviewer's verdict and marks."""

    machine: str  # "approve" / "reject"
    person: str  # the reviewer's verdict, fraud counted as a rejection
    checks: dict[str, str]  # scorecard criterion key -> the check's done / not_done / unsure
    marks: dict[str, int]
    submitted_at: dt.datetime | None = None  # the contact's, to count pairs since a criterion changed hands


@dataclass(frozen=True)
class AuditAgreement:
    pairs: int
    agreement: float | None  # share of verdicts the same
    kappa: float | None
    precision: float | None  # of the machine's approvals, the share reviewers approved too
    recall: float | None  # of the reviewers' approvals, the share the machine approved
    criteria: dict[str, tuple[int, float]]  # criterion -> (pairs, share agreeing: done == mark > 0)


def compare(pairs: list[AuditPair]) -> AuditAgreement:
    """Pure: the audit comparison over pairs already read."""
    machine = [p.machine for p in pairs]
    person = [p.person for p in pairs]
    same = sum(m == h for m, h in zip(machine, person, strict=True))
    approved_by_machine = [p for p in pairs if p.machine == "approve"]
    approved_by_person = [p for p in pairs if p.person == "approve"]
    both = sum(p.machine == p.person == "approve" for p in pairs)
    criteria: dict[str, list[bool]] = {}
    for pair in pairs:
        for key, status in pair.checks.items():
            if status in ("done", "not_done") and key in pair.marks:
                criteria.setdefault(key, []).append((status == "done") == (pair.marks[key] > 0))
    return AuditAgreement(
        pairs=len(pairs),
        agreement=same / len(pairs) if pairs else None,
        kappa=cohen_kappa(machine, person),
        precision=both / len(approved_by_machine) if approved_by_machine else None,
        recall=both / len(approved_by_person) if approved_by_person else None,
        criteria={key: (len(agree), sum(agree) / len(agree)) for key, agree in sorted(criteria.items())},
    )


async def audit_pairs(
    session: AsyncSession,
    project_id: int,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[AuditPair]:
    """The project's audit-share contacts (submitted in [since, until) when given) that a reviewer has
    decided: their first live primary review against the speech report's leaning (the machine's verdict had
    it decided). Only the report's routing, leaning and checks are read, never its transcript."""
    speech = AnalysisTask.speech
    query = (
        select(
            Contact.id,
            Contact.submitted_at,
            speech["routing"]["reasons"],
            speech["verdict"]["leaning"].as_string(),
            speech["checks"],
            Review.verdict,
            Review.marks,
        )
        .join(Audio, Audio.id == AnalysisTask.audio_id)
        .join(Contact, Contact.id == Audio.contact_id)
        .join(Review, Review.contact_id == Contact.id)
        .join(Assignment, Assignment.id == Review.assignment_id)
        .where(
            Contact.project_id == project_id,
            Contact.routed_to == PERSON,
            Review.undone_at.is_(None),
            Assignment.kind == AssignmentKind.PRIMARY,
        )
        .order_by(Contact.id, Review.id)
    )
    if since is not None:
        query = query.where(Contact.submitted_at >= since)
    if until is not None:
        query = query.where(Contact.submitted_at < until)
    pairs: list[AuditPair] = []
    seen: set[int] = set()
    for contact_id, submitted_at, reasons, leaning, checks, verdict, marks in (
        await session.execute(query)
    ).tuples():
        if contact_id in seen:
            continue
        seen.add(contact_id)
        if "audit" not in (reasons or []) or leaning not in ("approve", "reject"):
            continue
        by_criterion = {str(c["scorecard"]): str(c.get("status")) for c in checks or [] if c.get("scorecard")}
        person = "approve" if verdict == Verdict.APPROVE else "reject"
        pairs.append(
            AuditPair(
                leaning,
                person,
                by_criterion,
                {k: int(v) for k, v in (marks or {}).items()},
                submitted_at,
            )
        )
    return pairs


async def audit_agreement(session: AsyncSession, project_id: int) -> AuditAgreement:
    """The audit comparison over every audit pair the project has (`fieldcheck speech agreement`)."""
    return compare(await audit_pairs(session, project_id))


# -- criteria handed back to people ---------------------------------------------------------------------
MEASURED: Literal["measured"] = "measured"  # brought back by the audit agreeing again
MANAGER: Literal["manager"] = "manager"  # brought back by hand (`fieldcheck speech restore`)


async def returned_criteria(session: AsyncSession, project_id: int) -> set[str]:
    """The project's criteria people decide now: routing sends every contact that checks one to a person."""
    return set(
        await session.scalars(
            select(CriterionReturn.criterion).where(
                CriterionReturn.project_id == project_id, CriterionReturn.restored_at.is_(None)
            )
        )
    )


async def _last_changes(session: AsyncSession, project_id: int) -> dict[str, dt.datetime]:
    """When each criterion last changed hands (returned or brought back)."""
    last: dict[str, dt.datetime] = {}
    for row in await session.scalars(select(CriterionReturn).where(CriterionReturn.project_id == project_id)):
        for at in (row.returned_at, row.restored_at):
            if at is not None and (row.criterion not in last or at > last[row.criterion]):
                last[row.criterion] = at
    return last


@dataclass(frozen=True)
class CriterionAudit:
    key: str
    text: dict[str, str]  # the scorecard criterion's own words per language ({} when not on it)
    pairs: int  # audit pairs in the window since the criterion last changed hands
    agreement: float | None
    returned: bool  # people decide it (after the changes below are recorded)


@dataclass(frozen=True)
class AuditReview:
    """The digest's audit block: the window's comparison, each checked criterion, and what changes hands."""

    days: int
    bar: float
    min_pairs: int
    overall: AuditAgreement
    criteria: list[CriterionAudit] = field(default_factory=list)
    changes: list[CriterionChange] = field(default_factory=list)


async def review_audit(session: AsyncSession, project: Project, until: dt.datetime) -> AuditReview | None:
    """The audit pairs of the AUDIT_DAYS before `until` (None where the project's routing is off); each
    criterion is measured only on pairs since it last changed hands, and judged (services.speech.routing.
    judge_criteria). Reads only: the digest records the changes with its day (`record_changes`)."""
    rules = RoutingRules.from_settings(project.speech_settings)
    if not rules.enabled:
        return None
    pairs = await audit_pairs(session, project.id, since=until - dt.timedelta(days=AUDIT_DAYS), until=until)
    returned = await returned_criteria(session, project.id)
    last = await _last_changes(session, project.id)
    overall = compare(pairs)
    measured: dict[str, tuple[int, float]] = {}
    for key in sorted(set(overall.criteria) | returned):
        changed = last.get(key)
        if changed is None:
            found = overall.criteria.get(key)
        else:
            since = [p for p in pairs if p.submitted_at is not None and p.submitted_at >= changed]
            found = compare(since).criteria.get(key)
        if found is not None:
            measured[key] = found
    changes = judge_criteria(measured, returned, rules)
    now_returned = (returned | {c.criterion for c in changes if c.change == RETURN}) - {
        c.criterion for c in changes if c.change == RESTORE
    }
    words = {c.key: {str(k): v for k, v in c.text.items()} for c in scorecard_of(project.scorecard).criteria}
    criteria = []
    for key in sorted(set(measured) | returned):
        pairs_since, agreement = measured.get(key, (0, None))
        criteria.append(CriterionAudit(key, words.get(key, {}), pairs_since, agreement, key in now_returned))
    return AuditReview(AUDIT_DAYS, rules.criterion_bar, rules.criterion_min_pairs, overall, criteria, changes)


async def record_changes(
    session: AsyncSession, project_id: int, changes: list[CriterionChange], now: dt.datetime
) -> None:
    """In the caller's transaction (the digest's claim of its day, so a day's judgement is recorded once):
    a returned criterion gets an open CriterionReturn, a restored one has its open row closed."""
    for change in changes:
        if change.change == RETURN:
            if change.criterion in await returned_criteria(session, project_id):
                continue  # returned meanwhile by another path
            session.add(
                CriterionReturn(
                    project_id=project_id,
                    criterion=change.criterion,
                    returned_at=now,
                    agreement=change.agreement,
                    pairs=change.pairs,
                )
            )
            log.warning(
                "speech_criterion_returned",
                project_id=project_id,
                criterion=change.criterion,
                agreement=round(change.agreement, 4),
                pairs=change.pairs,
            )
        else:
            await _close(
                session,
                project_id,
                change.criterion,
                now,
                MEASURED,
                agreement=change.agreement,
                pairs=change.pairs,
            )
    await session.flush()


async def _close(
    session: AsyncSession,
    project_id: int,
    criterion: str,
    now: dt.datetime,
    how: str,
    *,
    agreement: float | None = None,
    pairs: int | None = None,
) -> bool:
    row = await session.scalar(
        select(CriterionReturn).where(
            CriterionReturn.project_id == project_id,
            CriterionReturn.criterion == criterion,
            CriterionReturn.restored_at.is_(None),
        )
    )
    if row is None:
        return False
    row.restored_at, row.restored_by = now, how
    row.restored_agreement, row.restored_pairs = agreement, pairs
    log.info(
        "speech_criterion_restored",
        project_id=project_id,
        criterion=criterion,
        by=how,
        agreement=None if agreement is None else round(agreement, 4),
        pairs=pairs,
    )
    return True


async def restore_criterion(
    session: AsyncSession, project_id: int, criterion: str, *, now: dt.datetime | None = None
) -> bool:
    """A manager brings a returned criterion back to the machine at once (False when it was not returned).
    Its agreement is then judged afresh, on audit pairs from now on."""
    closed = await _close(session, project_id, criterion, now or utcnow(), MANAGER)
    await session.flush()
    return closed
