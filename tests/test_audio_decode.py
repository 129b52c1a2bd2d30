"""In-process decoding of voice notes against ffmpeg's, on real Ogg Opus files made by ffmpeg's libopus
encoder (the variants a Telegram client or a phone's recorder may send)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from mutagen.ogg import OggPage

from services import audio


def _samples(segment: audio.AudioSegment) -> np.ndarray:
    return np.frombuffer(segment.raw_data, dtype="<i2").astype(np.float64)


def _encode(source: Path, target: Path, *options: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(source), *options, "-y", str(target)],
        check=True,
    )
    return target


@pytest.fixture(scope="module")
def variants(audio_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("variants")
    source = audio_dir / "dialogue.ogg"
    opus = ("-c:a", "libopus")
    return {
        "voice note": source,
        "voip 16 kbit/s": _encode(source, folder / "voip.ogg", *opus, "-b:a", "16k", "-application", "voip"),
        "stereo": _encode(source, folder / "stereo.ogg", "-ac", "2", *opus, "-b:a", "64k"),
        "60 ms frames": _encode(source, folder / "f60.ogg", *opus, "-frame_duration", "60"),
        "120 ms frames, CBR": _encode(
            source, folder / "f120.ogg", *opus, "-frame_duration", "120", "-vbr", "off"
        ),
    }


@pytest.mark.parametrize(
    "name", ["voice note", "voip 16 kbit/s", "stereo", "60 ms frames", "120 ms frames, CBR"]
)
def test_opus_decodes_as_ffmpeg_does(variants: dict[str, Path], name: str) -> None:
    data = variants[name].read_bytes()
    ours = audio._decode_opus(data, None)
    assert ours is not None, "an Ogg Opus file must not fall through to the slower decoders"
    theirs = audio.decode_with_ffmpeg(data)
    x, y = _samples(ours), _samples(theirs)
    assert abs(x.size - y.size) <= audio.SAMPLE_RATE // 100  # pre-skip and end trimming: within 10 ms
    n = min(x.size, y.size)
    assert np.corrcoef(x[:n], y[:n])[0, 1] > 0.99  # aligned sample for sample, not merely similar
    assert abs(np.sqrt(np.mean(x**2)) / np.sqrt(np.mean(y**2)) - 1) < 0.02
    assert audio.decode(data) == ours  # the path decode() takes


def test_output_gain_in_the_header_is_applied(variants: dict[str, Path], tmp_path: Path) -> None:
    """RFC 7845's output gain (Q7.8 dB in OpusHead): -6 dB written into the header, pages rewritten with
    their checksums, and ffmpeg's reading of the same file as the reference."""
    plain = variants["voice note"]
    with plain.open("rb") as reader:
        first = OggPage(reader)
        rest = reader.read()
    head = bytearray(first.packets[0])
    head[16:18] = (-6 * 256).to_bytes(2, "little", signed=True)
    first.packets = [bytes(head)]
    quieter = tmp_path / "gain.ogg"
    quieter.write_bytes(first.write() + rest)
    data = quieter.read_bytes()
    ours, theirs, before = (
        audio._decode_opus(data, None),
        audio.decode_with_ffmpeg(data),
        audio.decode(plain.read_bytes()),
    )
    assert ours is not None
    level = np.sqrt(np.mean(_samples(ours) ** 2)) / np.sqrt(np.mean(_samples(before) ** 2))
    assert level == pytest.approx(10 ** (-6 / 20), rel=0.01)
    n = min(len(ours.raw_data), len(theirs.raw_data)) // 2
    assert np.corrcoef(_samples(ours)[:n], _samples(theirs)[:n])[0, 1] > 0.99


def test_cap_stops_decoding_past_the_limit(audio_dir: Path) -> None:
    """A 95 s note checked against a 10 s limit is decoded only to just past the limit (as ffmpeg's -t)."""
    segment = audio._decode_opus((audio_dir / "long.ogg").read_bytes(), 10)
    assert segment is not None and 11.0 <= len(segment) / 1000 < 11.2


def test_other_ogg_streams_fall_through(audio_dir: Path, tmp_path: Path) -> None:
    """Vorbis or FLAC in Ogg, damaged pages, a missing libopus: the next decoder reads them, or the person
    hears it could not be played."""
    vorbis = _encode(audio_dir / "dialogue.ogg", tmp_path / "vorbis.ogg", "-c:a", "libvorbis").read_bytes()
    assert audio._decode_opus(vorbis, None) is None
    assert 10 < len(audio.decode(vorbis)) / 1000 < 14
    assert audio._decode_opus((audio_dir / "broken.ogg").read_bytes(), None) is None
    with pytest.raises(audio.AudioRejected):
        audio.decode((audio_dir / "broken.ogg").read_bytes())
    note = (audio_dir / "dialogue.ogg").read_bytes()
    assert audio._decode_opus(note[: len(note) // 2], None) is None  # a cut page: libsndfile reads the rest
    assert 4 < len(audio.decode(note[: len(note) // 2])) / 1000 < 8


def test_without_libopus_the_note_is_still_decoded(audio_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "_libopus", lambda: None)
    note = (audio_dir / "dialogue.ogg").read_bytes()
    assert audio._decode_opus(note, None) is None
    assert 10 < len(audio.decode(note)) / 1000 < 14
