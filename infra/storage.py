"""Where recordings live: content-addressed by sha256, behind an interface an S3-compatible store can implement."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol


class AudioStore(Protocol):
    # A put that takes about a millisecond (a local file and its fsync) is made in place inside the
    # contact's transaction; a slower one (a network PUT) from a worker thread. On SQLite the write lock is
    # held across it either way, and a thread hop waits for a turn of the busy event loop (infra/db.py).
    put_is_quick: bool

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

    put_is_quick = True

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


class S3AudioStore:
    """Recordings in an S3-compatible bucket (AWS S3, MinIO, Ceph, ...) under the same content-addressed keys
    as on disk, so moving a deployment is a copy. boto3 is synchronous: callers run its calls in a thread
    (intake, the voice worker, the outbox)."""

    put_is_quick = False

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        if client is None:
            import boto3  # noqa: PLC0415  only deployments that choose S3 need it (the `s3` extra)

            client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def _name(self, key: str) -> str:
        if ".." in key.split("/") or key.startswith("/"):
            raise ValueError("key escapes the store")
        return f"{self.prefix}/{key}" if self.prefix else key

    def key_for(self, data: bytes, suffix: str = "") -> str:
        digest = sha256_hex(data)
        return f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"

    def put(self, data: bytes, suffix: str = "") -> str:
        key = self.key_for(data, suffix)
        if not self.exists(key):  # a PUT is atomic in S3: a reader never sees half an object
            self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)
        return key

    def get(self, key: str) -> bytes:
        response = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        return bytes(response["Body"].read())

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError  # noqa: PLC0415  botocore: only the S3 store (the `s3` extra)

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> bool:
        if not self.exists(key):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        return True


def create_audio_store(settings: Any) -> AudioStore:
    """The store the settings name: the local disk by default, or an S3-compatible bucket."""
    if settings.audio_store == "s3":
        if not settings.s3_bucket:
            raise ValueError("AUDIO_STORE=s3 needs S3_BUCKET")
        return S3AudioStore(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url or None,  # an empty line in .env means AWS itself
            region=settings.s3_region or None,
        )
    return LocalAudioStore(settings.storage_root)
