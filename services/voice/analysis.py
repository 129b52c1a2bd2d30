"""One recording: where is speech, how many voices, which is the promoter, one voiceprint per voice."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydub import AudioSegment
from scipy.cluster.hierarchy import fcluster, linkage

from services.voice.encoder import SAMPLE_RATE, SpeakerEncoder

FRAME_MS = 30
MIN_VOICE_SECONDS = 2.0  # a cluster with less speech than this is noise, not a voice
MAX_VOICES = 3
# Short windows embed less reliably than whole utterances: they are clustered loosely (the encoder's
# window_threshold), then voices whose centroids are the same speaker by its own threshold are merged.


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

    @property
    def customers(self) -> list[Voice]:
        return [v for v in self.voices if v.role == "customer"]


def to_float(segment: AudioSegment) -> np.ndarray:
    samples = np.array(segment.get_array_of_samples(), dtype=np.float32)
    return samples / float(1 << (8 * segment.sample_width - 1))


def speech_mask(wav: np.ndarray, aggressiveness: int = 2) -> np.ndarray:
    """webrtcvad (the VAD that ships with Resemblyzer) on 30 ms frames; True where someone speaks."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)
    frame = SAMPLE_RATE * FRAME_MS // 1000
    pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16)
    count = len(pcm) // frame
    return np.array(
        [vad.is_speech(pcm[i * frame : (i + 1) * frame].tobytes(), SAMPLE_RATE) for i in range(count)],
        dtype=bool,
    )


def _normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def analyze(wav: np.ndarray, encoder: SpeakerEncoder, promoter_ref: np.ndarray | None = None) -> Analysis:
    duration = len(wav) / SAMPLE_RATE
    mask = speech_mask(wav)
    frame_s = FRAME_MS / 1000
    analysis = Analysis(duration=duration, speech_seconds=float(mask.sum()) * frame_s)
    if analysis.speech_seconds < MIN_VOICE_SECONDS:
        return analysis
    speech = np.concatenate(
        [
            wav[i * int(SAMPLE_RATE * frame_s) : (i + 1) * int(SAMPLE_RATE * frame_s)]
            for i in np.flatnonzero(mask)
        ]
    )
    embeddings, times = encoder.windows(wav, mask)
    analysis.whole = encoder.whole(speech, embeddings)
    keep = []
    for index, (start, end) in enumerate(times):
        frames = mask[int(start / frame_s) : max(int(start / frame_s) + 1, int(end / frame_s))]
        if frames.size and frames.mean() >= 0.5:
            keep.append(index)
    if not keep:
        return analysis
    embeddings = embeddings[keep]
    times = [times[i] for i in keep]
    if len(keep) == 1:
        labels = np.ones(1, dtype=int)
    else:
        tree = linkage(embeddings, method="average", metric="cosine")
        labels = fcluster(tree, t=1.0 - encoder.window_threshold, criterion="distance")
    window_step = encoder.window_step
    clusters = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        seconds = len(members) * window_step
        if seconds >= MIN_VOICE_SECONDS:
            clusters.append((seconds, members))
    clusters = _merge_same_speaker(embeddings, clusters, encoder.same_speaker_threshold, window_step)
    clusters = sorted(clusters, key=lambda c: -c[0])[:MAX_VOICES]
    for seconds, members in clusters:
        analysis.voices.append(
            Voice("unknown", _normalise(embeddings[members].mean(axis=0)), round(seconds, 2))
        )
    _label_roles(analysis, promoter_ref, encoder.same_speaker_threshold)
    for voice_index, (_, members) in enumerate(clusters):
        for member in members:
            analysis.segments.append((round(times[member][0], 2), round(times[member][1], 2), voice_index))
    analysis.segments = _turns(sorted(analysis.segments))
    return analysis


def _turns(windows: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Overlapping windows of one voice become one speaker turn."""
    turns: list[tuple[float, float, int]] = []
    for start, end, voice in windows:
        if turns and turns[-1][2] == voice and start <= turns[-1][1]:
            turns[-1] = (turns[-1][0], max(turns[-1][1], end), voice)
        else:
            turns.append((start, end, voice))
    return turns


def _merge_same_speaker(
    embeddings: np.ndarray, clusters: list[tuple[float, np.ndarray]], threshold: float, window_step: float
) -> list[tuple[float, np.ndarray]]:
    merged = True
    while merged and len(clusters) > 1:
        merged = False
        centroids = [_normalise(embeddings[m].mean(axis=0)) for _, m in clusters]
        best, pair = threshold, None
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                similarity = float(centroids[i] @ centroids[j])
                if similarity >= best:
                    best, pair = similarity, (i, j)
        if pair:
            i, j = pair
            members = np.concatenate([clusters[i][1], clusters[j][1]])
            clusters = [c for k, c in enumerate(clusters) if k not in pair] + [
                (len(members) * window_step, members)
            ]
            merged = True
    return clusters


def _label_roles(analysis: Analysis, promoter_ref: np.ndarray | None, threshold: float) -> None:
    """The voice closest to the promoter's enrolled voiceprint is the promoter (without one: the voice
    that speaks most, as in a sales pitch); every other voice is a customer."""
    if not analysis.voices:
        return
    if promoter_ref is not None:
        similarities = [float(v.embedding @ promoter_ref) for v in analysis.voices]
        for voice, similarity in zip(analysis.voices, similarities, strict=True):
            voice.promoter_similarity = similarity
        best = int(np.argmax(similarities))
        promoter_index = best if similarities[best] >= threshold or len(analysis.voices) > 1 else None
    else:
        promoter_index = 0
    for index, voice in enumerate(analysis.voices):
        voice.role = "promoter" if index == promoter_index else "customer"
