"""Speaker encoders behind one small interface, chosen explicitly in config and logged at load.

`speechbrain`: ECAPA-TDNN (`speechbrain/spkrec-ecapa-voxceleb` or any local directory in SpeechBrain's
pretrained layout), the production backend. Its weights come from the hub (`fieldcheck voice fetch-model`)
and are then loaded from the local directory only, never from the network.
`resemblyzer`: the GE2E encoder whose real weights ship inside the Resemblyzer wheel (works offline).
`auto`: SpeechBrain when its model directory is complete, else Resemblyzer.
Thresholds are per backend: a cosine means different things in different embedding spaces.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import structlog

if TYPE_CHECKING:
    import torch

log = structlog.get_logger(__name__)
SAMPLE_RATE = 16_000
ECAPA_SOURCE = "speechbrain/spkrec-ecapa-voxceleb"
# What SpeechBrain's EncoderClassifier pretrainer loads; a directory holding all of them is a usable model.
ECAPA_FILES = (
    "hyperparams.yaml",
    "embedding_model.ckpt",
    "mean_var_norm_emb.ckpt",
    "classifier.ckpt",
    "label_encoder.txt",
)
Backend = Literal["auto", "speechbrain", "resemblyzer"]


class SpeakerEncoder(Protocol):
    name: str
    dim: int
    same_speaker_threshold: float  # cosine at or above which two voiceprints are one person
    repeat_threshold: float  # stricter: one voice is compared with thousands when looking for repeats
    duplicate_threshold: float  # whole-recording embeddings this close are the same recording

    @property
    def window_step(self) -> float:
        """Seconds of audio each window embedding stands for."""

    window_threshold: float  # short windows embed less reliably: clustered loosely, then merged

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """One L2-normalised embedding for the whole signal (16 kHz mono float32)."""

    def windows(
        self, wav: np.ndarray, speech: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """L2-normalised embeddings of short windows and their (start, end) seconds. `speech` is a
        per-30 ms VAD mask; an encoder may skip windows without speech instead of embedding them."""

    def whole(self, speech_wav: np.ndarray, window_embeddings: np.ndarray) -> np.ndarray:
        """The whole-recording embedding (near-duplicate detection), reusing the windows where it can."""


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.where(norms == 0, 1, norms), dtype=np.float32)


@dataclass
class ResemblyzerEncoder:
    name: str = "resemblyzer"
    dim: int = 256
    # Measured on LibriSpeech test-other (10 speakers): same-speaker 1st percentile 0.79,
    # different-speaker 99th percentile 0.71. Repeats: bench/voice_bench.py, 97.5% P/R at 0.85.
    same_speaker_threshold: float = 0.75
    repeat_threshold: float = 0.85
    duplicate_threshold: float = 0.97
    window_threshold: float = 0.6
    windows_per_second: float = 2.0

    def __post_init__(self) -> None:
        started = time.perf_counter()
        log.info("voice_model_loading", backend=self.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad imports the deprecated pkg_resources
            from resemblyzer import VoiceEncoder

        self._encoder = VoiceEncoder("cpu", verbose=False)
        log.info("voice_model_loaded", backend=self.name, seconds=round(time.perf_counter() - started, 2))

    @property
    def window_step(self) -> float:
        return 1.0 / self.windows_per_second

    def embed(self, wav: np.ndarray) -> np.ndarray:
        return np.asarray(self._encoder.embed_utterance(wav.astype(np.float32)), dtype=np.float32)

    def windows(
        self, wav: np.ndarray, speech: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[tuple[float, float]]]:
        # One LSTM pass yields all overlapping partials; skipping silence would not save anything here.
        _, partials, splits = self._encoder.embed_utterance(
            wav.astype(np.float32), return_partials=True, rate=self.windows_per_second, min_coverage=0.5
        )
        times = [(s.start / SAMPLE_RATE, min(s.stop, len(wav)) / SAMPLE_RATE) for s in splits]
        return np.asarray(partials, dtype=np.float32), times

    def whole(self, speech_wav: np.ndarray, window_embeddings: np.ndarray) -> np.ndarray:
        return self.embed(speech_wav)


def speechbrain_model_present(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in ECAPA_FILES)


def fetch_speechbrain_model(model_dir: Path, source: str = ECAPA_SOURCE) -> Path:
    """Copy the pretrained files once (from the hub, or from a local directory), so that workers load
    from disk only."""
    import shutil

    model_dir.mkdir(parents=True, exist_ok=True)
    for name in ECAPA_FILES:
        log.info("voice_model_fetching", source=source, file=name)
        if Path(source).is_dir():
            shutil.copyfile(Path(source) / name, model_dir / name)
        else:
            from huggingface_hub import hf_hub_download

            hf_hub_download(repo_id=source, filename=name, local_dir=model_dir)
    log.info("voice_model_fetched", model_dir=str(model_dir))
    return model_dir


@dataclass
class SpeechBrainEncoder:
    """ECAPA through SpeechBrain's own EncoderClassifier (its features, normalisation and weights).

    Fast path, measured in bench/voice_bench.py against the plain fp32 model: only speech is embedded (VAD
    frames packed into non-overlapping windows), the windows run in batches under bfloat16 autocast
    (optionally compiled), and the whole-recording embedding is the mean of the windows instead of a
    second pass over the audio.
    """

    model_dir: Path
    name: str = "speechbrain"
    dim: int = 192
    # SpeechBrain's verification default for this model; not measurable here without its weights, so
    # `fieldcheck voice eval` writes a measured threshold into each project's calibration.
    same_speaker_threshold: float = 0.25
    repeat_threshold: float = 0.45
    duplicate_threshold: float = 0.9
    window_threshold: float = 0.2
    window_step: float = 1.5
    precision: Literal["bf16", "fp32"] = "bf16"
    compiled: bool = False  # torch.compile: about 1.7x faster again, after a one-off compile at start
    batch_size: int = 64  # a 60 s note is one batch
    _model: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        started = time.perf_counter()
        log.info("voice_model_loading", backend=self.name, model_dir=str(self.model_dir))
        if not speechbrain_model_present(self.model_dir):
            missing = [n for n in ECAPA_FILES if not (self.model_dir / n).is_file()]
            raise FileNotFoundError(
                f"SpeechBrain model incomplete in {self.model_dir} (missing {', '.join(missing)}); "
                "run `fieldcheck voice fetch-model` on a machine with internet"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from speechbrain.inference.speaker import EncoderClassifier

        directory = str(self.model_dir.resolve())
        # The hub's hyperparams.yaml names its files by hub id (`pretrained_path`); pointing it at the
        # directory keeps loading local even when a network is there.
        self._model = EncoderClassifier.from_hparams(
            source=directory,
            savedir=directory,
            overrides={"pretrained_path": directory},
            run_opts={"device": "cpu"},
        )
        self._model.eval()
        if self.compiled:
            self._compile()
        log.info(
            "voice_model_loaded",
            backend=self.name,
            precision=self.precision,
            compiled=self.compiled,
            seconds=round(time.perf_counter() - started, 2),
        )

    def _compile(self) -> None:
        """Compile the embedding network and warm it up on full and partial batches, so that the first
        recordings do not pay for compilation."""
        import torch

        started = time.perf_counter()
        log.info("voice_model_compiling", backend=self.name)
        import torch._inductor.config as inductor

        inductor.freezing = True  # weights are constants at inference: folded and prepacked for the CPU
        self._model.mods.embedding_model = torch.compile(self._model.mods.embedding_model)
        rng = np.random.default_rng(0)
        size = int(self.window_step * SAMPLE_RATE)
        for count in (self.batch_size, 3, 5):
            self.windows((rng.standard_normal(size * count) * 0.1).astype(np.float32))
        log.info("voice_model_compiled", seconds=round(time.perf_counter() - started, 1))

    def _encode(self, batch: torch.Tensor, precision: str | None = None) -> np.ndarray:
        import torch

        use_bf16 = (precision or self.precision) == "bf16"
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            embeddings = self._model.encode_batch(batch)
        return normalise(embeddings.float().squeeze(1).numpy())

    def embed(self, wav: np.ndarray) -> np.ndarray:
        import torch

        return np.asarray(self._encode(torch.from_numpy(wav.astype(np.float32))[None])[0])

    def pieces(self, wav: np.ndarray, speech: np.ndarray | None = None) -> list[np.ndarray]:
        """Sample indices of each window: the speech frames only (when a VAD mask is given), packed into
        consecutive non-overlapping windows, so no compute goes to silence; a short tail is dropped."""
        if speech is None:
            index = np.arange(len(wav))
        else:
            frame = SAMPLE_RATE * 30 // 1000
            keep = np.zeros(len(wav), dtype=bool)
            voiced = np.repeat(speech, frame)[: len(wav)]
            keep[: len(voiced)] = voiced
            index = np.flatnonzero(keep)
        size = int(self.window_step * SAMPLE_RATE)
        return [
            index[start : start + size]
            for start in range(0, len(index), size)
            if len(index) - start >= size // 2
        ]

    def windows(
        self,
        wav: np.ndarray,
        speech: np.ndarray | None = None,
        precision: str | None = None,
    ) -> tuple[np.ndarray, list[tuple[float, float]]]:
        import torch

        pieces = self.pieces(wav, speech)
        if not pieces:
            return np.zeros((0, self.dim), dtype=np.float32), []
        size = int(self.window_step * SAMPLE_RATE)
        chunks = np.zeros((len(pieces), size), dtype=np.float32)
        lengths = np.ones(len(pieces), dtype=np.float32)
        for row, piece in enumerate(pieces):
            chunks[row, : len(piece)] = wav[piece]
            lengths[row] = len(piece) / size
        use_bf16 = (precision or self.precision) == "bf16"
        out = []
        for first in range(0, len(pieces), self.batch_size):
            batch = torch.from_numpy(chunks[first : first + self.batch_size])
            relative = torch.from_numpy(lengths[first : first + self.batch_size])
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                embeddings = self._model.encode_batch(batch, relative)
            out.append(normalise(embeddings.float().squeeze(1).numpy()))
        times = [(int(piece[0]) / SAMPLE_RATE, (int(piece[-1]) + 1) / SAMPLE_RATE) for piece in pieces]
        return np.concatenate(out), times

    def whole(self, speech_wav: np.ndarray, window_embeddings: np.ndarray) -> np.ndarray:
        if len(window_embeddings):
            return normalise(window_embeddings.mean(axis=0))
        return self.embed(speech_wav)


def load_encoder(
    backend: str = "auto",
    model_dir: Path | None = None,
    precision: Literal["bf16", "fp32"] = "bf16",
    compiled: bool = False,
) -> SpeakerEncoder:
    if backend not in ("auto", "speechbrain", "resemblyzer"):
        raise ValueError(f"unknown voice backend {backend!r} (choose speechbrain, resemblyzer or auto)")
    encoder: SpeakerEncoder
    present = model_dir is not None and speechbrain_model_present(model_dir)
    if backend == "speechbrain" or (backend == "auto" and present):
        if model_dir is None:
            raise ValueError("the speechbrain backend needs a model directory (VOICE_MODEL_DIR)")
        encoder = SpeechBrainEncoder(model_dir, precision=precision, compiled=compiled)
    else:
        encoder = ResemblyzerEncoder()
    log.info(
        "voice_backend_selected",
        requested=backend,
        backend=encoder.name,
        model_dir=str(model_dir) if model_dir else None,
        speechbrain_model_present=present,
    )
    return encoder
