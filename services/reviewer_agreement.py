"""Reviewer agreement on contacts reviewed twice (blind): per-criterion agreement and Cohen's kappa."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Contact, Review


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Agreement beyond chance between two raters; None when undefined (no pairs, or one category only)."""
    if len(first) != len(second):
        raise ValueError("both raters must rate the same items")
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    counts_a, counts_b = Counter(first), Counter(second)
    expected = sum(counts_a[c] * counts_b[c] for c in counts_a.keys() | counts_b.keys()) / (n * n)
    if expected == 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True)
class Agreement:
    pairs: int
    verdict_kappa_by_reviewer: dict[int, float | None]
    criterion_agreement: dict[str, float]
    pairs_by_reviewer: dict[int, int] = field(default_factory=dict)


async def agreement(
    session: AsyncSession,
    project_id: int,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Agreement:
    """For each contact with exactly two live reviews: how often marks agree, and each reviewer's kappa
    (their verdicts against the other reviewer's on the same contacts). With `since`/`until`, only the
    calibration samples (blind second reviews) among the contacts submitted in the window."""
    if since is None and until is None:
        twice = (
            select(Review.contact_id)
            .join(Contact, Contact.id == Review.contact_id)
            .where(Contact.project_id == project_id, Review.undone_at.is_(None))
            .group_by(Review.contact_id)
            .having(func.count() >= 2)
        )
    else:  # the blind calibration samples submitted in the window (ix_contact_calibration): cheap at any size
        twice = select(Contact.id).where(Contact.project_id == project_id, Contact.calibration.is_(True))
        if since is not None:
            twice = twice.where(Contact.submitted_at >= since)
        if until is not None:
            twice = twice.where(Contact.submitted_at < until)
    rows = await session.execute(
        select(Review.contact_id, Review.reviewer_id, Review.verdict, Review.marks)
        .where(Review.contact_id.in_(twice), Review.undone_at.is_(None))
        .order_by(Review.contact_id, Review.id)
    )
    by_contact: dict[int, list[tuple[int, str, dict[str, int]]]] = defaultdict(list)
    for contact_id, reviewer_id, verdict, marks in rows.all():
        by_contact[contact_id].append((reviewer_id, str(verdict), marks))
    pairs = [reviews[:2] for reviews in by_contact.values() if len(reviews) >= 2]
    mine: dict[int, list[str]] = defaultdict(list)
    theirs: dict[int, list[str]] = defaultdict(list)
    same: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for (r1, v1, m1), (r2, v2, m2) in pairs:
        mine[r1].append(v1)
        theirs[r1].append(v2)
        mine[r2].append(v2)
        theirs[r2].append(v1)
        for key in m1.keys() & m2.keys():
            seen[key] += 1
            same[key] += int(m1[key] == m2[key])
    return Agreement(
        pairs=len(pairs),
        verdict_kappa_by_reviewer={r: cohen_kappa(mine[r], theirs[r]) for r in mine},
        criterion_agreement={k: same[k] / seen[k] for k in sorted(seen)},
        pairs_by_reviewer={r: len(v) for r, v in mine.items()},
    )
