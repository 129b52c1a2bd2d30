"""Real audio made on the spot (espeak-ng speech, Debian's festvox-ru Russian voice, ffmpeg silence and tones,
a two-voice dialogue through one phone channel) for the sandbox and the tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SENTENCE = (
    "Good afternoon! Would you like to try our new coffee? It is roasted in small batches, it tastes of "
    "chocolate and nuts, and today there is a discount of twenty percent on every pack. "
)


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def speech(
    path: Path,
    *,
    repeats: int = 1,
    voice: str = "en",
    speed: int = 160,
    pitch: int = 50,
    text: str = SENTENCE,
) -> Path:
    """Synthesised speech encoded like a Telegram voice note (Opus in OGG)."""
    wav = path.with_suffix(".wav")
    _run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text * repeats])
    _run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(wav),
            "-ac",
            "1",
            "-ar",
            "48000",
            "-c:a",
            "libopus",
            "-b:a",
            "24k",
            str(path),
        ]
    )
    wav.unlink()
    return path


def _generated(path: Path, source: str, codec: str, bitrate: str) -> Path:
    _run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            source,
            "-c:a",
            codec,
            "-b:a",
            bitrate,
            str(path),
        ]
    )
    return path


def silence(path: Path, seconds: float) -> Path:
    return _generated(path, f"anullsrc=r=48000:cl=mono:d={seconds}", "libopus", "16k")


def tone(path: Path, seconds: float) -> Path:
    return _generated(path, f"sine=frequency=440:duration={seconds}", "libmp3lame", "64k")


PROMOTER_LINES = (
    "Good afternoon! Would you like to try our new coffee?",
    "It is roasted in small batches, so it tastes of chocolate and nuts.",
    "Today there is a discount of twenty percent on every pack.",
    "We also have a decaf version if you prefer something milder in the evening.",
    "Shall I put one pack aside for you at the till?",
)
CUSTOMER_LINES = (
    "Hello. Yes, why not, let me try a little.",
    "Mm, it is quite strong. How much is a pack?",
    "That is not bad at all for the price.",
    "No, the normal one is fine, thank you.",
    "Yes please, one pack. Thank you very much.",
)


def _to_16k(wav_bytes: bytes) -> np.ndarray:
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ar", "16000", "-ac", "1", "pipe:1"],
        input=wav_bytes,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return np.frombuffer(decoded.stdout, dtype="<i2").astype(np.float32) / 32768


def _voice_wav(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng straight to 16 kHz mono float samples."""
    done = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return _to_16k(done.stdout)


FESTIVAL_RU = "festival"  # Debian's festvox-ru: msu_ru_nsh_clunits, units cut from one man's recorded speech


def festival_ru_available() -> bool:
    return shutil.which("text2wave") is not None and Path("/usr/share/festival/voices/russian").is_dir()


def _festival_wav(text: str) -> np.ndarray:
    """festvox-ru's Russian voice (Festival's text2wave; UTF-8 text) at 16 kHz mono."""
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder, "line.txt"), Path(folder, "line.wav")
        source.write_text(text, encoding="utf-8")
        subprocess.run(
            ["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", str(source), "-o", str(target)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return _to_16k(target.read_bytes())


def _say(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """One line at a common loudness (RMS 0.1), so that a voice's level is the dialogue's choice, not the
    synthesiser's."""
    wav = _festival_wav(text) if voice == FESTIVAL_RU else _voice_wav(text, voice, speed, pitch)
    return wav * (0.1 / (float(np.sqrt(np.mean(wav**2))) + 1e-9))


def dialogue(
    path: Path,
    *,
    promoter_voice: str = "en+m3",
    customer_voice: str = "en+f2",
    customer_gap_db: float = 8.0,
    snr_db: float = 18.0,
) -> Path:
    """A genuine two-person contact as one phone records it: turns of both voices, the customer quieter,
    one shared channel (phone band limits, shop noise, Opus), not two files glued together."""
    gap = np.zeros(int(16000 * 0.35), dtype=np.float32)
    parts: list[np.ndarray] = []
    for said, answer in zip(PROMOTER_LINES, CUSTOMER_LINES, strict=True):
        parts += [_voice_wav(said, promoter_voice, 160, 45), gap]
        parts += [_voice_wav(answer, customer_voice, 150, 60) * 10 ** (-customer_gap_db / 20), gap]
    path.write_bytes(_one_phone(np.concatenate(parts), snr_db))
    return path


def _one_phone(mix: np.ndarray, snr_db: float) -> bytes:
    """Shop noise (pink, at `snr_db` under the speech), a phone's band limits and Opus at 24 kbit/s."""
    from voicelab.fieldsim import opus_bytes, phone_channel  # noqa: PLC0415  scipy: only the simulated audio needs it

    rng = np.random.default_rng(7)
    white = rng.standard_normal(len(mix)).astype(np.float32)
    pink = np.cumsum(white) * 0.02
    pink = (pink - np.convolve(pink, np.ones(800) / 800, mode="same")).astype(np.float32)
    speech_rms = float(np.sqrt(np.mean(mix[np.abs(mix) > 0.01] ** 2)))
    noise = pink / (float(np.sqrt(np.mean(pink**2))) + 1e-9) * speech_rms * 10 ** (-snr_db / 20)
    mix = phone_channel(mix + noise, "mid-b")
    return opus_bytes(mix / (np.abs(mix).max() + 1e-9) * 0.8, 24)


# A Russian contact that follows the default script (services.speech.script): greeting, the product named
# and presented, the sale asked for, goodbye; the customer answers every line.
RU_PROMOTER_LINES = (
    "Здравствуйте! Меня зовут Анна, я из компании Кофейня.",
    "Хотите попробовать наш новый кофе?",
    "Он обжарен небольшими партиями, у него вкус шоколада и орехов.",
    "Сегодня на каждую пачку скидка двадцать процентов.",
    "Возьмёте одну пачку?",
    "Спасибо за покупку, до свидания!",
)
RU_CUSTOMER_LINES = (
    "Добрый день.",
    "Да, давайте попробую.",
    "Очень вкусно. А сколько стоит пачка?",
    "Это недорого.",
    "Да, одну пачку, пожалуйста.",
    "Спасибо, до свидания.",
)


def russian_dialogue(
    path: Path,
    *,
    rounds: int = 1,
    promoter_voice: str = FESTIVAL_RU,
    customer_voice: str = "ru+f2",
    customer_gap_db: float = 4.0,
    snr_db: float | None = 24.0,
    speed: int = 120,
    wait_seconds: float = 0.0,
) -> Path:
    """The Russian script spoken `rounds` times through one phone (as `dialogue`; `snr_db=None`: no phone
    channel nor noise): the promoter in festvox-ru's voice (FESTIVAL_RU), the customer in espeak-ng's.
    espeak-ng's Russian is on a knife edge for Whisper base: at 120 words a minute the promoter's whole first
    window decoded as "Спасибо, спасибо, спасибо." where MKL ran AVX2 kernels (MKL_ENABLE_INSTRUCTIONS=AVX2,
    as on a CPU without AVX-512), and slower it lost the greeting. festvox-ru's voice, cut from recorded
    speech, reads alike on every instruction set tried (confidence 0.69 against espeak's 0.53).
    `speed` and the pitches are espeak-ng's (Festival speaks at its own pace). `wait_seconds`: a silence
    after the customer's first answer, as while a customer tastes (what `cut_pauses` cuts)."""
    gap = np.zeros(int(16000 * 0.4), dtype=np.float32)
    wait = np.zeros(int(16000 * wait_seconds), dtype=np.float32)
    parts: list[np.ndarray] = []
    for _ in range(rounds):
        for line, (said, answer) in enumerate(zip(RU_PROMOTER_LINES, RU_CUSTOMER_LINES, strict=True)):
            parts += [_say(said, promoter_voice, speed, 50), gap]
            parts += [_say(answer, customer_voice, speed, 65) * 10 ** (-customer_gap_db / 20), gap]
            if line == 0 and wait.size:
                parts.append(wait)
    mix = np.concatenate(parts)
    if snr_db is None:  # no phone: the voices as synthesised, only Opus-encoded as Telegram sends them
        from voicelab.fieldsim import opus_bytes  # noqa: PLC0415  scipy: only the simulated audio needs it

        path.write_bytes(opus_bytes(mix / (np.abs(mix).max() + 1e-9) * 0.8, 32))
    else:
        path.write_bytes(_one_phone(mix, snr_db))
    return path


def russian_speech(path: Path, text: str) -> Path:
    """`text` in festvox-ru's voice, the promoter's in `russian_dialogue`, Opus-encoded as Telegram sends a
    voice note: the sample a promoter who speaks in that voice enrols with."""
    from voicelab.fieldsim import opus_bytes  # noqa: PLC0415  scipy: only the simulated audio needs it

    wav = _say(text, FESTIVAL_RU, 120, 50)
    path.write_bytes(opus_bytes(wav / (np.abs(wav).max() + 1e-9) * 0.8, 32))
    return path
