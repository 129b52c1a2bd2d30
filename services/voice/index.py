"""Nearest-voiceprint search over a project's stored voiceprints, kept in the worker's memory.

A contact's customer voice is compared with every customer voice of its project in the window: tens of
thousands of recordings a day make that a million voiceprints, too many to load from the database per
contact. Each worker keeps an index per (project, backend, role), brought up to date incrementally (rows
with a higher id) before each search. Small indexes are exact (FAISS flat inner product); from
`IVF_FROM` voiceprints on, an inverted-file index (FAISS IVF, trained on the voiceprints themselves) answers
in about a millisecond instead of scanning them all (bench/voice_bench.py: recall and latency at 1M).

Repeated customers are decided on adaptively s-normalised scores (`search_normalised`): a raw cosine means
different things for a voice recorded on a cheap phone in a loud shop and for one recorded clearly, so each
score is measured against how both voices score with their own closest cohort (the project's other customer
voiceprints): 0.5 * ((s - mu_q) / sd_q + (s - mu_c) / sd_c) over the top `COHORT_TOP` cohort scores
(Matejka et al., "Analysis of score normalization in multilingual speaker recognition", 2017).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Voiceprint, VoiceRole

log = structlog.get_logger(__name__)
IVF_FROM = 100_000
# Rows are read by id; with several workers a lower id can commit after a higher one, so each refresh looks
# this far back again (and skips what it already holds).
REFRESH_MARGIN = 1_000
COHORT_TOP = 100  # adaptive s-norm: statistics of each voice's closest cohort scores
MIN_COHORT = 50  # below this many voiceprints, normalisation is not meaningful: raw cosine decides


@dataclass
class VoiceprintIndex:
    """Inner-product (cosine, for unit vectors) search by voiceprint id."""

    dim: int
    ivf_from: int = IVF_FROM
    nprobe: int = 64
    _index: Any = field(init=False, repr=False)
    size: int = 0
    ivf: bool = False

    def __post_init__(self) -> None:
        import faiss  # noqa: PLC0415  faiss: heavy, only for the index

        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self.size += len(ids)
        if not self.ivf and self.size >= self.ivf_from:
            self._to_ivf()

    def _to_ivf(self) -> None:
        """Re-index as IVF: about 4*sqrt(N) lists, trained on a sample of the stored voiceprints."""
        import faiss  # noqa: PLC0415  faiss: heavy, only for the index

        flat: Any = faiss.downcast_index(self._index.index)
        vectors = faiss.vector_to_array(flat.codes).view(np.float32).reshape(self.size, self.dim)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        lists = int(4 * np.sqrt(self.size))
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(self.size, min(self.size, 64 * lists), replace=False)]
        log.info("voiceprint_index_training", voiceprints=self.size, lists=lists, sample=len(sample))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        index.add_with_ids(vectors, ids)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # reconstruct by id, for cohort statistics
        index.nprobe = self.nprobe
        self._index, self.ivf = index, True
        log.info("voiceprint_index_trained", voiceprints=self.size, lists=lists)

    def vector(self, voiceprint_id: int) -> np.ndarray:
        return np.asarray(self._index.reconstruct(int(voiceprint_id)), dtype=np.float32)

    def search(self, query: np.ndarray, k: int = 64) -> list[tuple[int, float]]:
        """Up to k (voiceprint id, cosine), best first."""
        if not self.size:
            return []
        scores, ids = self._index.search(
            np.asarray(query, dtype=np.float32).reshape(1, -1), min(k, self.size)
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]


@dataclass
class _Entry:
    index: VoiceprintIndex
    last_id: int = 0
    meta: dict[int, tuple[int | None, int | None, dt.datetime]] = field(default_factory=dict)
    # Cohort statistics per stored voiceprint, computed on first need (they drift slowly as the cohort grows).
    cohort: dict[int, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    voiceprint_id: int
    contact_id: int | None
    user_id: int | None
    created_at: dt.datetime
    score: float
    normalised: float | None = None  # adaptive s-norm score, where the cohort was large enough


def cohort_stats(scores: list[float], top: int = COHORT_TOP) -> tuple[float, float]:
    """Mean and spread of the `top` highest cohort scores (adaptive: the closest impostors matter)."""
    best = np.sort(np.asarray(scores, dtype=np.float64))[::-1][:top]
    if not len(best):
        return 0.0, 1.0
    return float(best.mean()), float(max(best.std(), 1e-3))


def snorm(score: float, query: tuple[float, float], candidate: tuple[float, float]) -> float:
    return 0.5 * ((score - query[0]) / query[1] + (score - candidate[0]) / candidate[1])


class VoiceprintCatalog:
    """The worker's indexes, one per (project, backend, role), refreshed from the database on use."""

    def __init__(self, *, ivf_from: int = IVF_FROM) -> None:
        self._entries: dict[tuple[int, str, VoiceRole], _Entry] = {}
        self._ivf_from = ivf_from

    async def search(
        self,
        session: AsyncSession,
        *,
        project_id: int,
        backend: str,
        role: VoiceRole,
        query: np.ndarray,
        threshold: float,
        k: int = 64,
    ) -> list[Match]:
        """Stored voiceprints of this role at or above `threshold`, best first (at most k)."""
        entry = await self._refreshed(session, project_id, backend, role, dim=len(query))
        found = []
        for voiceprint_id, score in entry.index.search(query, k):
            if score < threshold:
                break
            contact_id, user_id, created_at = entry.meta[voiceprint_id]
            found.append(Match(voiceprint_id, contact_id, user_id, created_at, score))
        return found

    async def search_normalised(
        self,
        session: AsyncSession,
        *,
        project_id: int,
        backend: str,
        role: VoiceRole,
        query: np.ndarray,
        threshold: float,
        raw_threshold: float,
        exclude_contact_id: int | None = None,
        k: int = 64,
    ) -> tuple[list[Match], bool]:
        """Matches whose s-normalised score is at or above `threshold` (with a cohort of at least
        MIN_COHORT voiceprints), else whose raw cosine is at or above `raw_threshold`; and whether the
        decision was normalised."""
        entry = await self._refreshed(session, project_id, backend, role, dim=len(query))
        if entry.index.size < MIN_COHORT:
            matches = await self.search(
                session,
                project_id=project_id,
                backend=backend,
                role=role,
                query=query,
                threshold=raw_threshold,
                k=k,
            )
            return [m for m in matches if m.contact_id != exclude_contact_id], False
        hits = [
            (i, s)
            for i, s in entry.index.search(query, COHORT_TOP + k)
            if exclude_contact_id is None or entry.meta[i][0] != exclude_contact_id
        ]
        query_stats = cohort_stats([s for _, s in hits])
        found = []
        for voiceprint_id, score in hits[:k]:
            stats = entry.cohort.get(voiceprint_id)
            if stats is None:
                own = entry.index.search(entry.index.vector(voiceprint_id), COHORT_TOP + 1)
                stats = entry.cohort[voiceprint_id] = cohort_stats([s for i, s in own if i != voiceprint_id])
            normalised = snorm(score, query_stats, stats)
            if normalised >= threshold:
                contact_id, user_id, created_at = entry.meta[voiceprint_id]
                found.append(
                    Match(voiceprint_id, contact_id, user_id, created_at, score, round(normalised, 3))
                )
        return found, True

    async def _refreshed(
        self, session: AsyncSession, project_id: int, backend: str, role: VoiceRole, dim: int
    ) -> _Entry:
        key = (project_id, backend, role)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(VoiceprintIndex(dim, ivf_from=self._ivf_from))
        rows = (
            await session.execute(
                select(
                    Voiceprint.id,
                    Voiceprint.contact_id,
                    Voiceprint.user_id,
                    Voiceprint.created_at,
                    Voiceprint.vector,
                )
                .where(
                    Voiceprint.project_id == project_id,
                    Voiceprint.backend == backend,
                    Voiceprint.role == role,
                    Voiceprint.id > entry.last_id - REFRESH_MARGIN,
                )
                .order_by(Voiceprint.id)
            )
        ).all()
        rows = [row for row in rows if row.id not in entry.meta]
        if rows:
            ids = np.array([row.id for row in rows], dtype=np.int64)
            vectors = np.stack([np.frombuffer(row.vector, dtype=np.float32) for row in rows])
            entry.index.add(ids, vectors)
            for row in rows:
                entry.meta[row.id] = (row.contact_id, row.user_id, row.created_at)
            entry.last_id = max(entry.last_id, int(ids.max()))
        return entry
