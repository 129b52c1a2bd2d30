"""Automatic decisions (issue #25 item 4): before a dispatch round gives queued contacts to reviewers, the
contacts of a project that turned speech routing on, whose analysis holds a speech report, are routed by
services.speech.routing: the clear ones get the machine's verdict, the rest go to people as before.

An automatic verdict is stored as a reviewer's primary verdict is (contact.final_verdict, reviewed_at,
status REVIEWED), so billing, disputes, the rejection-streak alert and the promoter's results work on it
unchanged, with no review row (no reviewer wrote one) and contact.routed_to == "automatic" to say so.
A contact routed to a person keeps its status and is marked routed_to == "person", with the reasons
kept in its analysis's speech report ("routing") for the card and the audit comparison.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

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
    Dispute,
    Project,
    Review,
    Verdict,
    VoiceFlag,
)
from models.base import utcnow
from services.reviewer_agreement import cohen_kappa
from services.speech.routing import AUTOMATIC, PERSON, Routing, RoutingRules, route

log = structlog.get_logger(__name__)

ROUND_LIMIT = 500  # contacts routed per project and dispatch round; the rest wait for the next one


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


async def audit_agreement(session: AsyncSession, project_id: int) -> AuditAgreement:
    """The project's audit-share contacts that a reviewer has decided: their first live primary review
    against the speech report's leaning (the machine's verdict had it decided)."""
    rows = await session.execute(
        select(Contact.id, AnalysisTask.speech, Review.verdict, Review.marks)
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
    pairs: list[AuditPair] = []
    seen: set[int] = set()
    for contact_id, speech, verdict, marks in rows.tuples():
        if contact_id in seen:
            continue
        seen.add(contact_id)
        routing = (speech or {}).get("routing") or {}
        leaning = ((speech or {}).get("verdict") or {}).get("leaning")
        if "audit" not in (routing.get("reasons") or []) or leaning not in ("approve", "reject"):
            continue
        checks = {
            str(c["scorecard"]): str(c.get("status"))
            for c in (speech or {}).get("checks") or []
            if c.get("scorecard")
        }
        person = "approve" if verdict == Verdict.APPROVE else "reject"
        pairs.append(AuditPair(leaning, person, checks, {k: int(v) for k, v in (marks or {}).items()}))
    return compare(pairs)
