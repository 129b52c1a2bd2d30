"""Nearest-voiceprint search over a project's stored voiceprints, kept in the worker's memory.

A contact's customer voice is compared with every customer voice of its project in the window: tens of
thousands of recordings a day make that a million voiceprints, too many to load from the database per
contact. Each worker keeps an index per (project, backend, role), brought up to date incrementally (rows
with a higher id) before each search. Small indexes are exact (FAISS flat inner product); from
`IVF_FROM` voiceprints on, an inverted-file index (FAISS IVF, trained on the voiceprints themselves) answers
in about a millisecond instead of scanning them all (bench/voice_bench.py: recall and latency at 1M).
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
        import faiss

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
        import faiss

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
        index.nprobe = self.nprobe
        self._index, self.ivf = index, True
        log.info("voiceprint_index_trained", voiceprints=self.size, lists=lists)

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


@dataclass(frozen=True)
class Match:
    voiceprint_id: int
    contact_id: int | None
    user_id: int | None
    created_at: dt.datetime
    score: float


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
