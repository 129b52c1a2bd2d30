"""Field-realistic recordings built from clean labelled speech, with ground truth, for evaluating voice checks.

A promoter's voice note is one cheap phone in a noisy shop: both people in ONE room, captured by ONE
microphone, the promoter close to it and the customer a metre away (6-12 dB quieter), short turns with
back-channels and overlap, shop noise and background babble, a phone's band limits and Telegram's Opus
encoding. Alternating two clean LibriSpeech files is none of that: each was recorded on its own microphone,
so the channel alone tells the speakers apart. Everything here is applied to the mix, never per speaker
(only the room's impulse response differs by position, as it does in a real room).

Kinds: `dialogue` (promoter and a customer), `monologue` (the promoter alone), `disguised` (the promoter
playing the customer with a pitch-shifted or whispered voice, possibly from farther away).
Ground truth is kept as speaker turns (RTTM); `disguised` turns are labelled with the promoter's identity,
because that is who speaks.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

SAMPLE_RATE = 16_000
KINDS = ("dialogue", "monologue", "disguised")


@dataclass(frozen=True)
class Condition:
    """The acoustic conditions one recording was made in (reported per condition in the evaluation)."""

    snr_db: float  # speech mix to shop noise
    level_gap_db: float  # how much quieter the customer is than the promoter
    overlap: float  # share of speech time with both talking
    rt60: float  # room reverberation, seconds
    bitrate_kbps: int  # Opus
    phone: str  # name of the simulated phone's frequency response
    disguise: str | None = None  # pitch+N / pitch-N / whisper


@dataclass
class Turn:
    start: float
    end: float
    speaker: str


@dataclass
class FieldRecording:
    kind: str
    promoter: str
    customer: str | None  # None for monologues; for `disguised` the promoter plays the customer
    wav: np.ndarray
    turns: list[Turn]
    condition: Condition
    opus: bytes = b""  # the voice note as Telegram would deliver it

    @property
    def true_voices(self) -> int:
        return len({t.speaker for t in self.turns})

    def rttm(self, uri: str) -> str:
        return "".join(
            f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
            for t in self.turns
        )

    def meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "promoter": self.promoter,
            "customer": self.customer,
            "condition": asdict(self.condition),
            "turns": [asdict(t) for t in self.turns],
        }


# Cheap phone microphones: a high-pass (small capsule, wind filter), a low-pass (codec / mic roll-off) and a
# presence peak. Values span what phone frequency-response measurements typically show.
PHONES: dict[str, tuple[float, float, float, float]] = {
    # name: (high-pass Hz, low-pass Hz, peak Hz, peak dB)
    "budget-a": (250.0, 3800.0, 2500.0, 6.0),
    "budget-b": (180.0, 5500.0, 3200.0, 4.0),
    "mid-a": (120.0, 7000.0, 4000.0, 3.0),
    "old-feature": (300.0, 3400.0, 1800.0, 5.0),
    "mid-b": (150.0, 6500.0, 2800.0, 2.0),
}


@dataclass
class SpeechBank:
    """Speech per speaker, active parts only: speaker id -> list of 16 kHz float32 utterances."""

    speakers: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def total(self, speaker: str) -> float:
        return sum(len(u) for u in self.speakers[speaker]) / SAMPLE_RATE


def trim(wav: np.ndarray, floor_db: float = -40.0) -> np.ndarray:
    """Cut leading and trailing silence (LibriSpeech files start and end with some)."""
    frame = SAMPLE_RATE // 100
    count = len(wav) // frame
    if count == 0:
        return wav
    energy = np.sqrt((wav[: count * frame].reshape(count, frame) ** 2).mean(axis=1) + 1e-12)
    active = np.flatnonzero(20 * np.log10(energy / (energy.max() + 1e-12)) > floor_db)
    if not active.size:
        return wav
    return wav[active[0] * frame : (active[-1] + 1) * frame]


def activity(wav: np.ndarray, floor_db: float = -35.0, bridge: float = 0.25) -> list[tuple[float, float]]:
    """Where a clean source is speaking (10 ms frames over the floor, gaps under `bridge` s bridged): the
    ground truth of a turn, so that a pause inside an utterance is not counted as speech."""
    frame = SAMPLE_RATE // 100
    count = len(wav) // frame
    if count == 0:
        return []
    energy = np.sqrt((wav[: count * frame].reshape(count, frame) ** 2).mean(axis=1) + 1e-12)
    on = 20 * np.log10(energy / (energy.max() + 1e-12)) > floor_db
    spans: list[tuple[float, float]] = []
    for index in np.flatnonzero(on):
        start, end = index / 100, (index + 1) / 100
        if spans and start - spans[-1][1] <= bridge:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return [s for s in spans if s[1] - s[0] >= 0.1]


class Rooms:
    """Shops: a pool of rooms with one phone microphone and two talker positions each (impulse responses
    from pyroomacoustics' image-source model). Pools are cached: building a reverberant room takes time."""

    def __init__(self, rng: random.Random, count: int = 24) -> None:
        self.rooms = [self._room(rng) for _ in range(count)]

    @staticmethod
    def _room(rng: random.Random) -> dict[str, Any]:
        import pyroomacoustics as pra  # noqa: PLC0415  pyroomacoustics: heavy, simulation only

        size = [rng.uniform(4, 14), rng.uniform(3, 9), rng.uniform(2.6, 3.8)]
        rt60 = rng.uniform(0.25, 0.8)
        absorption, max_order = pra.inverse_sabine(rt60, size)
        room = pra.ShoeBox(
            size, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(max_order, 12)
        )
        phone = [rng.uniform(1, size[0] - 1), rng.uniform(1, size[1] - 1), rng.uniform(1.0, 1.5)]

        def around(distance: float) -> list[float]:
            angle = rng.uniform(0, 2 * np.pi)
            return [
                float(np.clip(phone[0] + distance * np.cos(angle), 0.3, size[0] - 0.3)),
                float(np.clip(phone[1] + distance * np.sin(angle), 0.3, size[1] - 0.3)),
                rng.uniform(1.4, 1.8),
            ]

        # 0: promoter holding the phone; 1: customer about a metre away; 2: far (babble), 3: a second far spot
        for position in (
            around(rng.uniform(0.25, 0.5)),
            around(rng.uniform(0.8, 1.6)),
            around(3.0),
            around(4.0),
        ):
            room.add_source(position)
        room.add_microphone(phone)
        room.compute_rir()
        rirs = [np.asarray(room.rir[0][k], dtype=np.float32) for k in range(4)]
        return {"rt60": rt60, "rirs": [r / (np.abs(r).max() + 1e-9) for r in rirs]}


def _rms(wav: np.ndarray) -> float:
    return float(np.sqrt(np.mean(wav**2) + 1e-12))


def _active_rms(wav: np.ndarray) -> float:
    frame = SAMPLE_RATE // 50
    count = len(wav) // frame
    if not count:
        return _rms(wav)
    energy = np.sqrt((wav[: count * frame].reshape(count, frame) ** 2).mean(axis=1))
    loud = energy[energy > energy.max() * 0.05]
    return float(np.sqrt(np.mean(loud**2))) if loud.size else _rms(wav)


def _convolve(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    return np.asarray(signal.fftconvolve(wav, rir)[: len(wav)], dtype=np.float32)


def pitch_shift(wav: np.ndarray, semitones: float) -> np.ndarray:
    from audiomentations import PitchShift  # noqa: PLC0415  audiomentations: heavy, simulation only

    shift = PitchShift(min_semitones=semitones, max_semitones=semitones, p=1.0)
    return np.asarray(shift(samples=wav.astype(np.float32), sample_rate=SAMPLE_RATE), dtype=np.float32)


def whisper(wav: np.ndarray, order: int = 18) -> np.ndarray:
    """A whisper-like voice: the speaker's vocal-tract envelope (LPC per 25 ms frame) excited by noise
    instead of the vocal folds, which removes pitch the way whispering does."""
    import librosa  # noqa: PLC0415  librosa: heavy, simulation only

    frame, hop = 400, 200
    window = np.hanning(frame).astype(np.float32)
    out = np.zeros(len(wav) + frame, dtype=np.float32)
    noise = np.random.default_rng(len(wav)).standard_normal(len(wav) + frame).astype(np.float32)
    for start in range(0, len(wav) - frame, hop):
        chunk = wav[start : start + frame] * window
        gain = _rms(chunk)
        if gain < 1e-4:
            continue
        try:
            coefficients = librosa.lpc(chunk.astype(np.float64) + 1e-9, order=order)
        except (FloatingPointError, ValueError):
            continue
        excitation = noise[start : start + frame]
        shaped = signal.lfilter([1.0], coefficients, excitation).astype(np.float32) * window
        out[start : start + frame] += shaped * (gain / (_rms(shaped) + 1e-9))
    return out[: len(wav)]


def phone_channel(wav: np.ndarray, phone: str) -> np.ndarray:
    high, low, peak, gain_db = PHONES[phone]
    sos_high = signal.butter(2, high, "highpass", fs=SAMPLE_RATE, output="sos")
    sos_low = signal.butter(4, min(low, SAMPLE_RATE / 2 - 100), "lowpass", fs=SAMPLE_RATE, output="sos")
    out = signal.sosfilt(sos_low, signal.sosfilt(sos_high, wav))
    # presence peak: a resonant band-pass added back
    sos_peak = signal.butter(2, [peak * 0.8, peak * 1.25], "bandpass", fs=SAMPLE_RATE, output="sos")
    out = out + (10 ** (gain_db / 20) - 1) * signal.sosfilt(sos_peak, out)
    return np.asarray(out, dtype=np.float32)


def opus_bytes(wav: np.ndarray, bitrate_kbps: int) -> bytes:
    """An Ogg/Opus voice note through ffmpeg's libopus, as Telegram's are (16-32 kbit/s, mono)."""
    pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()
    return bytes(subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0",
         "-c:a", "libopus", "-b:a", f"{bitrate_kbps}k", "-application", "voip", "-f", "ogg", "pipe:1"],
        input=pcm, capture_output=True, check=True,
    ).stdout)  # fmt: skip


def opus_roundtrip(wav: np.ndarray, bitrate_kbps: int) -> tuple[np.ndarray, bytes]:
    """The note as the bot receives it (encoded) and as analysis hears it (decoded)."""
    encoded = opus_bytes(wav, bitrate_kbps)
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "pipe:1"],
        input=encoded, capture_output=True, check=True,
    ).stdout  # fmt: skip
    out = np.frombuffer(decoded, dtype="<i2").astype(np.float32) / 32768
    if len(out) < len(wav):
        out = np.pad(out, (0, len(wav) - len(out)))
    return out[: len(wav)], encoded


def enrolment(rng: random.Random, utterance: np.ndarray) -> np.ndarray:
    """A promoter's enrolment note: their own phone, somewhere quieter than a shop, a little room sound."""
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    wav = phone_channel(utterance, rng.choice(sorted(PHONES)))
    noise = nrng.standard_normal(len(wav)).astype(np.float32)
    wav = wav + noise * _active_rms(wav) * 10 ** (-rng.uniform(20, 30) / 20)
    return np.asarray(wav / (np.abs(wav).max() + 1e-9) * 0.7, dtype=np.float32)


def shop_noise(rng: random.Random, length: int, babble: list[np.ndarray], room: dict[str, Any]) -> np.ndarray:
    """Background babble (several far talkers through the room), pink noise (ventilation, fridges), mains
    hum and the odd clatter. Synthetic: no recordings of shops are available here."""
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    mix = np.zeros(length, dtype=np.float32)
    for _ in range(rng.randint(4, 8)):
        source = babble[rng.randrange(len(babble))]
        if len(source) < length:
            source = np.tile(source, length // len(source) + 1)
        offset = rng.randrange(max(1, len(source) - length))
        talker = source[offset : offset + length]
        mix += _convolve(talker / (_active_rms(talker) + 1e-9), room["rirs"][rng.choice((2, 3))])
    mix = mix / (_rms(mix) + 1e-9)
    white = nrng.standard_normal(length).astype(np.float32)
    pink = signal.lfilter(
        [0.049922, -0.095993, 0.050612, -0.004408], [1, -2.494956, 2.017265, -0.522189], white
    )
    pink = pink / (_rms(pink) + 1e-9)
    t = np.arange(length) / SAMPLE_RATE
    hum = np.sum([np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3)], axis=0).astype(np.float32)
    hum = hum / (_rms(hum) + 1e-9)
    clatter = np.zeros(length, dtype=np.float32)
    for _ in range(rng.randint(0, max(1, length // (SAMPLE_RATE * 8)))):
        at = rng.randrange(length)
        burst = nrng.standard_normal(min(3200, length - at)).astype(np.float32)
        clatter[at : at + len(burst)] += burst * np.exp(-np.arange(len(burst)) / 400) * 4
    noise = (
        mix * rng.uniform(0.6, 1.0) + pink * rng.uniform(0.3, 0.7) + hum * rng.uniform(0.0, 0.15) + clatter
    )
    return np.asarray(noise, dtype=np.float32)


def _pieces(rng: random.Random, utterances: list[np.ndarray], seconds: float) -> list[np.ndarray]:
    """Cut `seconds` of speech from a speaker's utterances into a pool to draw turns from (in order, so no
    audio is used twice in one recording)."""
    pool: list[np.ndarray] = []
    total = 0.0
    order = list(range(len(utterances)))
    rng.shuffle(order)
    for index in order:
        pool.append(utterances[index])
        total += len(utterances[index]) / SAMPLE_RATE
        if total >= seconds:
            break
    return pool


class _Reader:
    """Draws consecutive chunks of one speaker's speech."""

    def __init__(self, pool: list[np.ndarray]) -> None:
        self.audio = np.concatenate(pool) if pool else np.zeros(0, dtype=np.float32)
        self.at = 0

    def left(self) -> float:
        return (len(self.audio) - self.at) / SAMPLE_RATE

    def take(self, seconds: float) -> np.ndarray:
        size = int(seconds * SAMPLE_RATE)
        chunk = self.audio[self.at : self.at + size]
        self.at += size
        return chunk


def simulate(
    rng: random.Random,
    kind: str,
    promoter: str,
    customer: str | None,
    *,
    bank: SpeechBank,
    rooms: Rooms,
    babble: list[np.ndarray],
    max_seconds: float = 60.0,
) -> FieldRecording:
    """One field-realistic recording. The customer's speech (or the promoter's disguised voice) takes the
    customer's place, farther from the phone; everything after the room is shared by both voices."""
    if kind not in KINDS:
        raise ValueError(kind)
    room = rooms.rooms[rng.randrange(len(rooms.rooms))]
    gap = rng.uniform(6.0, 12.0)
    target_overlap = rng.uniform(0.05, 0.15) if kind != "monologue" else 0.0
    disguise = None
    promoter_reader = _Reader(_pieces(rng, bank.speakers[promoter], max_seconds))
    other_reader: _Reader | None = None
    if kind == "dialogue":
        assert customer is not None
        other_reader = _Reader(_pieces(rng, bank.speakers[customer], max_seconds / 2))
    elif kind == "disguised":
        # The promoter's own speech, split: half for their own turns, half disguised as the customer's.
        audio = promoter_reader.audio
        half = len(audio) // 2
        promoter_reader = _Reader([audio[:half]])
        disguise = rng.choice(["pitch+4", "pitch+6", "pitch-4", "whisper"])
        other = audio[half:]
        if disguise == "whisper":
            other = whisper(other)
        else:
            other = pitch_shift(other, float(disguise.removeprefix("pitch")))
        other_reader = _Reader([other])
    total = min(max_seconds, promoter_reader.left() + (other_reader.left() if other_reader else 0))
    length = int((total + 1.0) * SAMPLE_RATE)
    tracks, truth = _conversation(
        rng, (promoter_reader, other_reader), (promoter, customer or promoter), target_overlap, total
    )
    used = int(min(length, (max((t.end for t in truth), default=1.0) + 0.5) * SAMPLE_RATE))
    promoter_track = _convolve(tracks[0][:used], room["rirs"][0])
    far = 1 if kind == "dialogue" or rng.random() < 0.5 else 0
    other_track = _convolve(tracks[1][:used], room["rirs"][far])
    reference = _active_rms(promoter_track)
    mix = promoter_track / (reference + 1e-9)
    if other_reader is not None:
        mix = mix + other_track / (_active_rms(other_track) + 1e-9) * 10 ** (-gap / 20)
    snr = rng.uniform(5.0, 20.0)
    noise = shop_noise(rng, used, babble, room)
    mix = mix + noise * (_active_rms(mix) / (_rms(noise) + 1e-9)) * 10 ** (-snr / 20)
    phone = rng.choice(sorted(PHONES))
    mix = phone_channel(mix, phone)
    mix = mix / (np.abs(mix).max() + 1e-9) * rng.uniform(0.3, 0.9)  # the phone's automatic gain
    bitrate = rng.choice((16, 24, 32))
    mix, encoded = opus_roundtrip(mix, bitrate)
    truth.sort(key=lambda t: t.start)
    overlap = _overlap_share(truth)
    condition = Condition(
        snr_db=round(snr, 1),
        level_gap_db=round(gap, 1) if other_reader is not None else 0.0,
        overlap=round(overlap, 3),
        rt60=round(room["rt60"], 2),
        bitrate_kbps=bitrate,
        phone=phone,
        disguise=disguise,
    )
    return FieldRecording(
        kind, promoter, customer if kind == "dialogue" else None, mix, truth, condition, encoded
    )


def _conversation(
    rng: random.Random,
    readers: tuple[_Reader, _Reader | None],
    labels: tuple[str, str],
    target_overlap: float,
    total: float,
) -> tuple[list[np.ndarray], list[Turn]]:
    """Turn-taking: promoter turns of 1-6 s, customer turns of 0.8-4.5 s or back-channels of 0.3-0.7 s,
    pauses of 0.1-0.8 s, and some turns starting before the last one ends. One track per voice."""
    promoter_reader, other_reader = readers
    length = int((total + 1.0) * SAMPLE_RATE)
    tracks = [np.zeros(length, dtype=np.float32), np.zeros(length, dtype=np.float32)]
    truth: list[Turn] = []
    cursor = rng.uniform(0.2, 0.8)
    speaker = 0
    while cursor < total:
        reader = promoter_reader if speaker == 0 or other_reader is None else other_reader
        if speaker == 0:
            seconds = rng.uniform(1.0, 6.0)
        elif rng.random() < 0.3:
            seconds = rng.uniform(0.3, 0.7)  # back-channel: "mm-hm", "yes"
        else:
            seconds = rng.uniform(0.8, 4.5)
        chunk = trim(reader.take(seconds))
        if len(chunk) < SAMPLE_RATE * 0.25:
            if promoter_reader.left() < 0.3 and (other_reader is None or other_reader.left() < 0.3):
                break
            speaker = 1 - speaker if other_reader is not None else 0
            continue
        start = int(cursor * SAMPLE_RATE)
        end = min(length, start + len(chunk))
        tracks[speaker][start:end] += chunk[: end - start]
        for a, b in activity(chunk[: end - start]):
            truth.append(Turn(round(cursor + a, 3), round(cursor + b, 3), labels[speaker]))
        turn_seconds = (end - start) / SAMPLE_RATE
        if other_reader is not None and rng.random() < target_overlap * 4:
            cursor += turn_seconds * rng.uniform(0.6, 0.9)  # the next one starts before this one ends
        else:
            cursor += turn_seconds + (
                rng.uniform(0.1, 0.8) if other_reader is not None else rng.uniform(0.2, 1.2)
            )
        if other_reader is not None:
            speaker = 1 - speaker
    return tracks, truth


def _overlap_share(turns: list[Turn]) -> float:
    """Share of speech time during which two people talk at once."""
    grid = np.zeros(int(max((t.end for t in turns), default=0) * 100) + 1, dtype=np.int8)
    for speaker in {t.speaker for t in turns}:
        mask = np.zeros_like(grid, dtype=bool)
        for t in turns:
            if t.speaker == speaker:
                mask[int(t.start * 100) : int(t.end * 100)] = True
        grid += mask
    speech = int((grid > 0).sum())
    return float((grid > 1).sum()) / speech if speech else 0.0


def load_bank(folder: Path, speakers: list[str], load: Any) -> SpeechBank:
    """Speech of the given speakers from a LibriSpeech-layout folder (speaker/…/*.flac or flat files named
    speaker-chapter-utt.flac)."""
    bank = SpeechBank()
    for path in sorted(folder.rglob("*.flac")):
        relative = path.relative_to(folder)
        speaker = relative.parts[0] if len(relative.parts) > 1 else path.stem.split("-")[0]
        if speaker in speakers:
            bank.speakers.setdefault(speaker, []).append(trim(load(path)))
    return bank
