"""Voiceprint search: exact while small, FAISS IVF once large, and the same answers either way."""

from __future__ import annotations

import numpy as np

from services.voice.index import VoiceprintIndex


def speakers(count: int, prints_each: int, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit voiceprints around random speaker centres (same-speaker cosine about 0.9), and their speakers."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owners = np.repeat(np.arange(count), prints_each)
    prints = centres[owners] + 0.04 * rng.standard_normal((len(owners), dim)).astype(np.float32)
    return prints / np.linalg.norm(prints, axis=1, keepdims=True), owners


def test_small_index_is_exact() -> None:
    prints, _ = speakers(100, 3)
    index = VoiceprintIndex(64, ivf_from=10_000)
    index.add(np.arange(1, 301), prints)
    found = index.search(prints[7], k=3)
    assert not index.ivf and found[0][0] == 8 and abs(found[0][1] - 1.0) < 1e-5
    exact = np.argsort(-(prints @ prints[7]))[:3] + 1
    assert [i for i, _ in found] == exact.tolist()
    assert found[0][1] >= found[1][1] >= found[2][1]


def test_large_index_switches_to_ivf_and_keeps_finding_the_speaker() -> None:
    prints, owners = speakers(2_000, 4)
    index = VoiceprintIndex(64, ivf_from=6_000)
    index.add(np.arange(1, 5_001), prints[:5_000])
    assert not index.ivf
    index.add(np.arange(5_001, 8_001), prints[5_000:])  # crosses the threshold: re-indexed as IVF
    assert index.ivf and index.size == 8_000
    queries, query_owners = speakers(2_000, 1, seed=0)  # the same centres, fresh noise
    rng = np.random.default_rng(1)
    hits = 0
    for q in rng.choice(2_000, 100, replace=False):
        found = index.search(queries[q], k=8)
        same = {i for i, score in found if owners[i - 1] == query_owners[q] and score >= 0.8}
        hits += len(same) == 4
    assert hits >= 95, f"all four prints of the speaker found for only {hits}/100 queries"
