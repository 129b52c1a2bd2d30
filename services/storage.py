"""Where recordings live: content-addressed by sha256, behind an interface an S3-compatible store can implement."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol


class AudioStore(Protocol):
    def put(self, data: bytes, suffix: str = "") -> str:
        """Store bytes, return their key (idempotent: the same bytes give the same key)."""

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove the bytes (retention, erasure); False when they were not there."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalAudioStore:
    """Files under `root/ab/cd/<sha256><suffix>`; written to a temp file then renamed, so never half-written."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key_for(self, data: bytes, suffix: str = "") -> str:
        digest = sha256_hex(data)
        return f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("key escapes the store")
        return path

    def put(self, data: bytes, suffix: str = "") -> str:
        key = self.key_for(data, suffix)
        target = self.path(key)
        if target.exists():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> bool:
        path = self.path(key)
        if not path.exists():
            return False
        path.unlink()
        return True
