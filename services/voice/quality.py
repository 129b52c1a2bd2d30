"""How good the automatic voice flags are, judged by the project's own reviewers, and a refit from them.

Every review records a verdict and, on the default scorecard, whether the customer was real. Those are the
labels: a self-recording flag (no customer voice, customer is the promoter) is confirmed when the reviewer
marked the customer not real or judged the contact fraud; every other flag is confirmed by a fraud
verdict. The latest review of a contact that was not undone counts (a re-review replaces the first).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    AnalysisState,
    AnalysisTask,
    Audio,
    AudioKind,
    Contact,
    FlagKind,
    Review,
    Verdict,
    VoiceFlag,
)
from models.payloads import SelfRecording
from services.rates import share
from services.voice.probability import Calibration, Logistic, features_for

SELF_RECORDING = (FlagKind.NO_CUSTOMER, FlagKind.CUSTOMER_IS_PROMOTER)
MIN_LABELS = 20  # of each class, before a refit is allowed: fewer make a calibration worse than none


@dataclass(frozen=True)
class Label:
    contact_id: int
    fraud: bool
    customer_real: bool | None  # None where the scorecard has no such criterion, or it was not marked

    @property
    def self_recorded(self) -> bool:
        return self.fraud or self.customer_real is False


@dataclass(frozen=True)
class FlagQuality:
    kind: str  # a flag kind, or "<kind> (likely)" / "<kind> (unsure)" for the self-recording flags
    flagged: int
    confirmed: int
    positives: int  # reviewed contacts where the thing the flag looks for was true
    reviewed: int

    @property
    def precision(self) -> float | None:
        return share(self.confirmed, self.flagged)

    @property
    def recall(self) -> float | None:
        return share(self.confirmed, self.positives)


async def review_labels(session: AsyncSession, project_id: int, last: int = 500) -> dict[int, Label]:
    """The latest standing review of the project's last `last` reviewed contacts."""
    latest = (  # walked from the newest contact back, so a big project costs `last` rows, not all of them
        select(Review.contact_id)
        .join(Contact, Contact.id == Review.contact_id)
        .where(Contact.project_id == project_id, Review.undone_at.is_(None))
        .distinct()
        .order_by(Review.contact_id.desc())
        .limit(last)
    )
    contact_ids = list(await session.scalars(latest))
    if not contact_ids:
        return {}
    rows = (
        await session.execute(
            select(Review.contact_id, Review.verdict, Review.marks)
            .where(Review.contact_id.in_(contact_ids), Review.undone_at.is_(None))
            .order_by(Review.contact_id.desc(), Review.id.desc())
        )
    ).all()
    labels: dict[int, Label] = {}
    for contact_id, verdict, marks in rows:
        if contact_id in labels:
            continue
        if len(labels) >= last:
            break
        real = (marks or {}).get("real_customer")
        labels[contact_id] = Label(contact_id, verdict == Verdict.FRAUD, None if real is None else bool(real))
    return labels


async def flag_quality(session: AsyncSession, project_id: int, last: int = 500) -> list[FlagQuality]:
    labels = await review_labels(session, project_id, last)
    if not labels:
        return []
    flags = list(await session.scalars(select(VoiceFlag).where(VoiceFlag.contact_id.in_(list(labels)))))
    by_kind: dict[str, set[int]] = defaultdict(set)
    for flag in flags:
        by_kind[flag.kind.value].add(flag.contact_id)
        details = flag.details
        if isinstance(details, SelfRecording) and details.confidence:
            by_kind[f"{flag.kind.value} ({details.confidence})"].add(flag.contact_id)
    self_positive = {c for c, label in labels.items() if label.self_recorded}
    fraud_positive = {c for c, label in labels.items() if label.fraud}
    result = []
    for kind in sorted(by_kind):
        base = kind.split(" ")[0]
        positives = self_positive if base in {k.value for k in SELF_RECORDING} else fraud_positive
        flagged = by_kind[kind]
        result.append(FlagQuality(kind, len(flagged), len(flagged & positives), len(positives), len(labels)))
    return result


async def labelled_evidence(
    session: AsyncSession, project_id: int, backend: str, last: int = 2000
) -> list[tuple[dict[str, float], bool]]:
    """(features, self-recorded per the reviewers) for reviewed contacts analysed with `backend`."""
    labels = await review_labels(session, project_id, last)
    rows = (
        await session.execute(
            select(Audio.contact_id, AnalysisTask.evidence)
            .join(AnalysisTask, AnalysisTask.audio_id == Audio.id)
            .where(
                Audio.contact_id.in_(list(labels)),
                Audio.kind == AudioKind.DIALOGUE,
                AnalysisTask.state == AnalysisState.DONE,
            )
        )
    ).all()
    out = []
    for contact_id, evidence in rows:
        if evidence is None or evidence.backend != backend or not evidence.features:
            continue
        label = labels[contact_id]
        if label.customer_real is None and not label.fraud:
            continue  # no word on the customer: not a label
        out.append((dict(evidence.features), label.self_recorded))
    return out


class NotEnoughReviews(Exception):
    pass


def refit(backend: str, examples: list[tuple[dict[str, float], bool]], project_id: int) -> Calibration:
    """A project's own calibration from its reviewed contacts. Features that need an enrolment are fitted
    on the contacts that had one."""
    positives = sum(1 for _, label in examples if label)
    negatives = len(examples) - positives
    if positives < MIN_LABELS or negatives < MIN_LABELS:
        raise NotEnoughReviews(
            f"project {project_id}: {positives} self-recorded and {negatives} genuine reviewed contacts with "
            f"{backend} evidence; at least {MIN_LABELS} of each are needed"
        )
    rows = [features for features, _ in examples]
    labels = [int(label) for _, label in examples]
    one_features, self_features = features_for(rows[0])  # the analysis the backend runs decides
    one_voice = Logistic.fit(one_features, rows, labels)
    enrolled = [(f, y) for f, y in zip(rows, labels, strict=True) if "enrol_margin" in f]
    if sum(y for _, y in enrolled) >= MIN_LABELS and sum(1 - y for _, y in enrolled) >= MIN_LABELS:
        self_recorded = Logistic.fit(self_features, [f for f, _ in enrolled], [y for _, y in enrolled])
    else:
        self_recorded = Logistic(
            one_features, one_voice.mean, one_voice.scale, one_voice.coef, one_voice.intercept
        )
    return Calibration(
        backend,
        one_voice,
        self_recorded,
        f"project {project_id} reviews: {positives} self-recorded, {negatives} genuine",
    )


def describe(quality: list[FlagQuality]) -> list[dict[str, Any]]:
    return [
        {
            "flag": q.kind,
            "flagged": q.flagged,
            "confirmed": q.confirmed,
            "precision": None if q.precision is None else round(q.precision, 3),
            "recall": None if q.recall is None else round(q.recall, 3),
            "reviewed": q.reviewed,
        }
        for q in quality
    ]
