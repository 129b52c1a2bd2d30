"""Speaker-verification accuracy on a folder of labelled speech: EER and the threshold at 1% false accepts.

Used by `fieldcheck voice eval` (which writes the result into a project's calibration) and the benchmark.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.voice.encoder import SpeakerEncoder

AUDIO_SUFFIXES = {".flac", ".wav", ".mp3", ".ogg", ".oga", ".opus", ".m4a"}


@dataclass(frozen=True)
class Verification:
    eer: float
    eer_threshold: float
    threshold_at_1pct_far: float
    same_trials: int
    different_trials: int
    speakers: int
    files: int


def eer(same: list[float], diff: list[float]) -> tuple[float, float, float]:
    """(equal error rate, its threshold, threshold at 1% false accepts)."""
    scores = np.array(same + diff)
    labels = np.array([1] * len(same) + [0] * len(diff))
    gap, rate, threshold = 2.0, 1.0, 0.0
    for t in np.unique(scores):
        far = float(((scores >= t) & (labels == 0)).sum()) / len(diff)
        frr = float(((scores < t) & (labels == 1)).sum()) / len(same)
        if abs(far - frr) < gap:
            gap, rate, threshold = abs(far - frr), (far + frr) / 2, float(t)
    return rate, threshold, float(np.quantile(np.array(diff), 0.99))


def labelled_files(folder: Path) -> dict[str, list[Path]]:
    """Speaker -> files. LibriSpeech layout (speaker/chapter/utt.flac or speaker/utt.flac); flat folders
    fall back to the file-name prefix before the first '-' or '_' (LibriSpeech's own naming)."""
    speakers: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(folder)
        speaker = relative.parts[0] if len(relative.parts) > 1 else path.stem.replace("_", "-").split("-")[0]
        speakers.setdefault(speaker, []).append(path)
    return {s: files for s, files in speakers.items() if len(files) >= 2}


def evaluate(
    folder: Path,
    encoder: SpeakerEncoder,
    load: Callable[[Path], np.ndarray],
    progress: Callable[[int, int], None] | None = None,
) -> Verification:
    speakers = labelled_files(folder)
    if len(speakers) < 2:
        raise ValueError(f"{folder}: need at least 2 speakers with 2 or more recordings each")
    items = [(speaker, path) for speaker, files in speakers.items() for path in files]
    embeddings = []
    for done, (speaker, path) in enumerate(items, 1):
        embeddings.append((speaker, encoder.embed(load(path))))
        if progress:
            progress(done, len(items))
    same: list[float] = []
    diff: list[float] = []
    for (a, ea), (b, eb) in itertools.combinations(embeddings, 2):
        (same if a == b else diff).append(float(ea @ eb))
    rate, threshold, at_1pct = eer(same, diff)
    return Verification(rate, threshold, at_1pct, len(same), len(diff), len(speakers), len(items))
