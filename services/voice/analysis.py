"""One recording: where is speech, how many voices, which is the promoter, one voiceprint per voice.

Decided inside the recording, never against one global cosine: on one phone in one shop, different people
score as high against each other as the same person does across two clean recordings (issue #9). So the
speech (silero-vad) is cut into short overlapping windows, the windows are split in two by spectral
clustering with auto-tuned affinity pruning (spectralcluster), and what decides is how well that split
holds *relative to this recording's own scores*: within-part against between-part similarity in units of
the recording's own spread, the silhouette, and how much the second part speaks. The promoter's enrolment
is an anchor: which part is the promoter, and whether the "customer" part scores like the promoter too.
Those measurements (`Analysis.evidence`) become calibrated probabilities (services.voice.probability).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydub import AudioSegment

from services.voice.encoder import SAMPLE_RATE, CampplusEncoder, SpeakerEncoder, normalise
from services.voice.probability import Calibration, packaged

FRAME_MS = 30  # resolution of `speech_mask`
VAD_CHUNK = 512  # silero-vad's window at 16 kHz (32 ms)
MIN_WINDOWS = 6  # fewer windows than this cannot be split meaningfully
MIN_VOICE_SECONDS = 1.0  # a part with less speech than this is not reported as a voice
MAX_VOICES = 3


@dataclass
class Voice:
    role: str  # promoter, customer, unknown
    embedding: np.ndarray
    speech_seconds: float
    promoter_similarity: float | None = None


@dataclass
class Analysis:
    duration: float
    speech_seconds: float
    voices: list[Voice] = field(default_factory=list)
    segments: list[tuple[float, float, int]] = field(default_factory=list)  # (start, end, voice index)
    whole: np.ndarray | None = None  # whole-recording embedding, for near-duplicate detection
    # What the judgement rests on (features of services.voice.probability), and its outcome.
    evidence: dict[str, float] = field(default_factory=dict)
    p_one_voice: float | None = None  # None: too little speech to judge
    p_self_recorded: float | None = None
    calibrated: bool = False
    overlap_seconds: float = 0.0  # two voices at once (the overlap-aware diarisation sees it; windows do not)

    @property
    def customers(self) -> list[Voice]:
        return [v for v in self.voices if v.role == "customer"]


def to_float(segment: AudioSegment) -> np.ndarray:
    samples = np.array(segment.get_array_of_samples(), dtype=np.float32)
    return samples / float(1 << (8 * segment.sample_width - 1))


_vad_lock = threading.Lock()
_vad_model: Any = None


def _vad() -> Any:
    global _vad_model  # noqa: PLW0603 - one model per process, loaded on first use
    if _vad_model is None:
        from silero_vad import load_silero_vad  # noqa: PLC0415  silero_vad/torch: heavy, loaded with the model

        _vad_model = load_silero_vad()
    return _vad_model


def speech_spans(wav: np.ndarray, threshold: float = 0.5) -> list[tuple[float, float]]:
    """Speech as (start, end) seconds: silero-vad's own segmentation (its hysteresis, 200 ms minimum speech,
    150 ms minimum silence, 30 ms padding). Sequential by design: its recurrent state adapts to the noise
    over seconds, so cutting the note into parallel streams changes what it hears. About 0.35 s for 60 s."""
    import torch  # noqa: PLC0415  torch: heavy, loaded with the model
    from silero_vad import get_speech_timestamps  # noqa: PLC0415  silero_vad/torch: heavy, loaded with the model

    if len(wav) < VAD_CHUNK:
        return []
    with _vad_lock, torch.inference_mode():
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)),
            _vad(),
            threshold=threshold,
            sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=200,
            min_silence_duration_ms=150,
            speech_pad_ms=30,
        )
    return [(round(s["start"] / SAMPLE_RATE, 3), round(s["end"] / SAMPLE_RATE, 3)) for s in stamps]


def speech_mask(wav: np.ndarray) -> np.ndarray:
    """True per 30 ms frame where someone speaks (for encoders that pack speech, and enrolment)."""
    frame_s = FRAME_MS / 1000
    mask = np.zeros(len(wav) // int(SAMPLE_RATE * frame_s), dtype=bool)
    for start, end in speech_spans(wav):
        mask[int(start / frame_s) : math.ceil(end / frame_s)] = True
    return mask


def enrolment_embedding(encoder: SpeakerEncoder, wav: np.ndarray) -> tuple[np.ndarray, float]:
    """The promoter's reference voiceprint: their enrolment recording's speech, embedded whole, and how
    many seconds of speech it had."""
    spans = speech_spans(wav)
    if not spans:
        return encoder.embed(wav), 0.0
    speech = np.concatenate([wav[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in spans])
    return encoder.embed(speech), float(sum(b - a for a, b in spans))


def _window_starts(spans: list[tuple[float, float]], size: int, hop: int, total: int) -> np.ndarray:
    """Window start samples over speech only. A span shorter than a window but at least half of one gets one
    window centred on it (a short turn is embedded with a little context rather than dropped)."""
    starts: list[int] = []
    for a, b in spans:
        first, last = int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)
        if last - first >= size:
            starts.extend(range(first, last - size + 1, hop))
            if (last - size) - starts[-1] >= hop // 2:
                starts.append(last - size)
        elif last - first >= size // 2:
            starts.append(max(0, min(total - size, (first + last) // 2 - size // 2)))
    return np.array(starts, dtype=np.int64)


def _split(embeddings: np.ndarray, clusters: int) -> np.ndarray:
    """Spectral clustering (auto-tuned row-wise pruning of the affinity, graph-cut Laplacian), the
    configuration of Google's Turn-to-Diarize without its turn constraints, at a fixed number of parts."""
    from spectralcluster import AutoTune, LaplacianType, RefinementOptions, SpectralClusterer, ThresholdType  # noqa: PLC0415  spectralcluster: only this clustering
    from spectralcluster.refinement import RefinementName, SymmetrizeType  # noqa: PLC0415  spectralcluster: only this clustering

    refinement = RefinementOptions(
        thresholding_soft_multiplier=0.01,
        thresholding_type=ThresholdType.Percentile,
        thresholding_with_binarization=True,
        thresholding_preserve_diagonal=True,
        symmetrize_type=SymmetrizeType.Average,
        refinement_sequence=[RefinementName.RowWiseThreshold, RefinementName.Symmetrize],
    )
    clusterer = SpectralClusterer(
        min_clusters=clusters,
        max_clusters=clusters,
        refinement_options=refinement,
        autotune=AutoTune(p_percentile_min=0.4, p_percentile_max=0.95, init_search_step=0.05, search_level=1),
        laplacian_type=LaplacianType.GraphCut,
        row_wise_renorm=True,
        custom_dist="cosine",
    )
    return np.asarray(clusterer.predict(embeddings), dtype=int)


def split_evidence(
    embeddings: np.ndarray, labels: np.ndarray, seconds_per_window: float, starts: np.ndarray, hop: int
) -> dict[str, float]:
    """How well a two-part split holds, in this recording's own terms (part 1 is the smaller one).
    `coherence`: how much more often neighbouring windows keep their part than chance would have them do;
    people speak in turns, so a split between two people is coherent in time, a split of one voice by
    content or noise much less so."""
    sims = embeddings @ embeddings.T
    upper = np.triu_indices(len(embeddings), 1)
    same = labels[:, None] == labels[None, :]
    spread = float(sims[upper].std()) or 1e-6
    within = float(sims[upper][same[upper]].mean()) if same[upper].any() else 1.0
    between = float(sims[upper][~same[upper]].mean()) if (~same[upper]).any() else within
    minor = int(min((labels == 0).sum(), (labels == 1).sum()))
    silhouette = 0.0
    if minor >= 2 and minor < len(labels):
        from sklearn.metrics import silhouette_score  # noqa: PLC0415  scikit-learn: heavy, only when fitting

        silhouette = float(silhouette_score(embeddings, labels, metric="cosine"))
    neighbours = np.diff(starts) <= hop * 1.5
    coherence = 0.0
    if neighbours.any():
        kept = float((labels[1:] == labels[:-1])[neighbours].mean())
        share = float(labels.mean())
        chance = share * share + (1 - share) * (1 - share)
        coherence = (kept - chance) / (1 - chance + 1e-6)
    return {
        "gap_z": (within - between) / spread,
        "coherence": coherence,
        "silhouette": silhouette,
        "minor_log_seconds": math.log1p(minor * seconds_per_window),
        "minor_share": minor / len(labels),
        "between": between,
        "minor_seconds": minor * seconds_per_window,
    }


def analyze(
    wav: np.ndarray,
    encoder: SpeakerEncoder,
    promoter_ref: np.ndarray | None = None,
    calibration: Calibration | None = None,
) -> Analysis:
    """CAM++ diarises with segmentation-3.0 (services.voice.diarisation); the other encoders with windows."""
    if isinstance(encoder, CampplusEncoder) and encoder.segmentation:
        from services.voice.diarisation import analyze_segmented  # noqa: PLC0415  import cycle: services.voice.diarisation imports this module

        return analyze_segmented(wav, encoder, promoter_ref, calibration)
    duration = len(wav) / SAMPLE_RATE
    spans = speech_spans(wav)
    speech_seconds = sum(b - a for a, b in spans)
    analysis = Analysis(duration=duration, speech_seconds=round(speech_seconds, 2))
    if not spans:
        return analysis
    speech = np.concatenate([wav[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in spans])
    size = int(encoder.diar_window * SAMPLE_RATE)
    hop = int(encoder.diar_hop * SAMPLE_RATE)
    starts = _window_starts(spans, size, hop, len(wav))
    embeddings = encoder.embed_windows(wav, starts, size)
    if len(embeddings) < MIN_WINDOWS:
        # Too little speech to split: one voice as far as can be told, and no judgement on it.
        analysis.whole = encoder.whole(speech, embeddings) if len(embeddings) else encoder.embed(speech)
        analysis.voices = [Voice("unknown", _centroid(embeddings, analysis.whole), round(speech_seconds, 2))]
        _label_roles(analysis, promoter_ref)
        analysis.segments = [(a, b, 0) for a, b in spans]
        return analysis

    per_window = speech_seconds / len(embeddings)
    labels = _split(embeddings, 2)
    if (labels == 1).sum() > (labels == 0).sum():
        labels = 1 - labels  # part 0 is the larger one
    evidence = split_evidence(embeddings, labels, per_window, starts, hop)
    if not (labels == 1).any():  # the clusterer found one part: its missing centroid falls back to the whole
        analysis.whole = encoder.whole(speech, embeddings)
    centroids = [_centroid(embeddings[labels == k], analysis.whole) for k in (0, 1)]
    if promoter_ref is not None:
        scores = [float(c @ promoter_ref) for c in centroids]
        promoter_part = int(np.argmax(scores))
        evidence["enrol_promoter"] = scores[promoter_part]
        evidence["enrol_customer"] = scores[1 - promoter_part]
        evidence["enrol_margin"] = scores[promoter_part] - scores[1 - promoter_part]
    analysis.evidence = {k: round(v, 4) for k, v in evidence.items()}

    _judge(
        analysis,
        evidence,
        calibration or packaged(encoder.calibration_name),
        enrolled=promoter_ref is not None,
    )
    if analysis.p_one_voice is not None and analysis.p_one_voice >= 0.5:
        parts = [np.arange(len(embeddings))]
    else:
        parts = [np.flatnonzero(labels == k) for k in (0, 1)]
        if len(embeddings) >= 3 * MIN_WINDOWS:
            parts = _maybe_third(embeddings, parts, evidence["gap_z"], per_window)
    window_labels = np.zeros(len(embeddings), dtype=int)
    for index, part in enumerate(parts):
        window_labels[part] = index
    analysis.segments = _resegment(spans, starts, size, window_labels)
    if len(parts) == 1:  # one voice: its own speech is all the speech, embedded once as `whole`
        if analysis.whole is None:
            analysis.whole = encoder.whole(speech, embeddings)
        analysis.voices = [Voice("unknown", analysis.whole, round(speech_seconds, 2))]
    else:
        _voiceprints(
            analysis, encoder, wav, speech=speech, embeddings=embeddings, parts=parts, per_window=per_window
        )
    _label_roles(analysis, promoter_ref)
    return analysis


def _judge(
    analysis: Analysis, evidence: dict[str, float], calibration: Calibration | None, *, enrolled: bool
) -> None:
    """The probabilities the flags state. An uncalibrated backend says only "plainly two voices" (0.25) or
    "not sure" (0.5), never more. A calibration fitted on another analysis's evidence (windows against the
    overlap-aware diarisation) does not apply: it would read features that were never measured."""
    if calibration is not None and not set(calibration.one_voice.features) <= set(evidence):
        calibration = None
    analysis.calibrated = calibration is not None
    if calibration is None:
        # windows: the split's gap; segmentation: how alike the two sides of the forced split are
        plainly_two = evidence["gap_z"] >= 1.0 if "gap_z" in evidence else evidence.get("link", 1.0) < 0.3
        analysis.p_one_voice = 0.25 if plainly_two else 0.5
        analysis.p_self_recorded = analysis.p_one_voice
        return
    analysis.p_one_voice = calibration.one_voice.probability(evidence)
    analysis.p_self_recorded = (
        calibration.self_recorded.probability(evidence) if enrolled else analysis.p_one_voice
    )


def _voiceprints(
    analysis: Analysis,
    encoder: SpeakerEncoder,
    wav: np.ndarray,
    *,
    speech: np.ndarray,
    embeddings: np.ndarray,
    parts: list[np.ndarray],
    per_window: float,
) -> None:
    """Each voice's stored print is its own speech embedded as one utterance, which matches the same person
    in another contact better than the mean of short windows (bench/field_eval.py); a voice with under 2 s
    keeps its window mean. The whole-recording print comes out of the same pass."""
    pieces = [
        np.concatenate(
            [wav[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b, v in analysis.segments if v == index]
            or [np.zeros(0, dtype=np.float32)]
        )
        for index in range(len(parts))
    ]
    heard = [index for index, piece in enumerate(pieces) if len(piece)]
    prints, whole = encoder.voiceprints([pieces[index] for index in heard], speech, embeddings)
    by_voice = dict(zip(heard, prints, strict=True))
    analysis.whole = whole
    analysis.voices = [
        Voice(
            "unknown",
            by_voice[index]
            if len(pieces[index]) >= 2 * SAMPLE_RATE
            else _centroid(embeddings[part], analysis.whole),
            round(len(part) * per_window, 2),
        )
        for index, part in enumerate(parts)
    ]


def _maybe_third(
    embeddings: np.ndarray, parts: list[np.ndarray], gap_z: float, per_window: float
) -> list[np.ndarray]:
    """A third voice (an interview, a friend chiming in) when splitting in three separates as well as the
    two-way split did and every part has real speech."""
    labels = _split(embeddings, 3)
    sizes = [int((labels == k).sum()) for k in range(3)]
    if min(sizes) * per_window < 3.0:
        return parts
    sims = embeddings @ embeddings.T
    spread = float(sims[np.triu_indices(len(embeddings), 1)].std()) or 1e-6
    centroids = [normalise(embeddings[labels == k].mean(axis=0)) for k in range(3)]
    closest = max(float(centroids[i] @ centroids[j]) for i in range(3) for j in range(i + 1, 3))
    within = min(float((sims[np.ix_(labels == k, labels == k)]).mean()) for k in range(3))
    if (within - closest) / spread < gap_z:
        return parts
    order = sorted(range(3), key=lambda k: -sizes[k])
    return [np.flatnonzero(labels == k) for k in order]


def _centroid(embeddings: np.ndarray, fallback: np.ndarray | None) -> np.ndarray:
    if len(embeddings):
        return normalise(embeddings.mean(axis=0))
    assert fallback is not None
    return fallback


def _resegment(
    spans: list[tuple[float, float]], starts: np.ndarray, size: int, labels: np.ndarray
) -> list[tuple[float, float, int]]:
    """Every 10 ms of speech takes the label of the window whose centre is nearest; runs become turns."""
    centres = (starts + size / 2) / SAMPLE_RATE
    turns: list[tuple[float, float, int]] = []
    for a, b in spans:
        times = np.arange(a, b, 0.01)
        if not len(times):
            continue
        nearest = labels[np.abs(centres[None, :] - times[:, None]).argmin(axis=1)]
        edges = np.flatnonzero(np.diff(nearest)) + 1
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(times)], strict=True):
            start, end, label = float(times[lo]), min(b, float(times[hi - 1]) + 0.01), int(nearest[lo])
            if turns and turns[-1][2] == label and start - turns[-1][1] < 0.02:
                turns[-1] = (turns[-1][0], round(end, 2), label)
            else:
                turns.append((round(start, 2), round(end, 2), label))
    return turns


def _label_roles(analysis: Analysis, promoter_ref: np.ndarray | None) -> None:
    """The voice closest to the promoter's enrolment is the promoter (without one: the voice that speaks
    most, as in a sales pitch); every other voice is a customer."""
    if not analysis.voices:
        return
    promoter_index = 0
    if promoter_ref is not None:
        similarities = [float(v.embedding @ promoter_ref) for v in analysis.voices]
        for voice, similarity in zip(analysis.voices, similarities, strict=True):
            voice.promoter_similarity = round(similarity, 4)
        promoter_index = int(np.argmax(similarities))
    for index, voice in enumerate(analysis.voices):
        voice.role = "promoter" if index == promoter_index else "customer"
