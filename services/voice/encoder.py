"""Speaker encoders behind one small interface, chosen explicitly in config and logged at load.

`resemblyzer`: the GE2E encoder whose real weights ship inside the Resemblyzer wheel (works offline).
SpeechBrain ECAPA (`speechbrain/spkrec-ecapa-voxceleb`) is the intended production backend; it needs
torchaudio (torch 2.9.1) and is not wired in yet (see docs/decisions.md).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import structlog

log = structlog.get_logger(__name__)
SAMPLE_RATE = 16_000


class SpeakerEncoder(Protocol):
    name: str
    dim: int
    same_speaker_threshold: float  # cosine at or above which two voiceprints are one person

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """One L2-normalised embedding for the whole signal (16 kHz mono float32)."""

    def windows(self, wav: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """Embeddings of short overlapping windows, computed in one pass, and their (start, end) seconds."""


@dataclass
class ResemblyzerEncoder:
    name: str = "resemblyzer"
    dim: int = 256
    # Measured on LibriSpeech test-other (10 speakers): same-speaker 1st percentile 0.79,
    # different-speaker 99th percentile 0.71.
    same_speaker_threshold: float = 0.75
    windows_per_second: float = 2.0

    def __post_init__(self) -> None:
        started = time.perf_counter()
        log.info("voice_model_loading", backend=self.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad imports the deprecated pkg_resources
            from resemblyzer import VoiceEncoder

        self._encoder = VoiceEncoder("cpu", verbose=False)
        log.info("voice_model_loaded", backend=self.name, seconds=round(time.perf_counter() - started, 2))

    def embed(self, wav: np.ndarray) -> np.ndarray:
        return np.asarray(self._encoder.embed_utterance(wav.astype(np.float32)), dtype=np.float32)

    def windows(self, wav: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
        _, partials, splits = self._encoder.embed_utterance(
            wav.astype(np.float32), return_partials=True, rate=self.windows_per_second, min_coverage=0.5
        )
        times = [(s.start / SAMPLE_RATE, min(s.stop, len(wav)) / SAMPLE_RATE) for s in splits]
        return np.asarray(partials, dtype=np.float32), times


def load_encoder(backend: str = "auto") -> SpeakerEncoder:
    if backend not in ("auto", "resemblyzer"):
        raise ValueError(f"voice backend {backend!r} is not available here (choose resemblyzer or auto)")
    encoder = ResemblyzerEncoder()
    log.info("voice_backend_selected", requested=backend, backend=encoder.name)
    return encoder
