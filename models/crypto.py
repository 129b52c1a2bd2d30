"""Customers' personal data encrypted at rest: phone numbers, their written answers (also where an alert
quotes them). Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under keys from the environment.

`DATA_KEYS` holds one or more Fernet keys, comma-separated: the first encrypts, every one decrypts, so a
key is rotated by putting the new one first and keeping the old one for as long as data it sealed is
kept (the project's retention). Without `DATA_KEYS` a key file is generated next to the data
(`var/data.key`, mode 0600) with a warning: fine for a laptop, not for a server.

The keyring is process-wide, set once at start (`configure`), like logging: the column type that seals
and reveals (EncryptedText) gets no other context from SQLAlchemy than the dialect.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text, TypeDecorator
from sqlalchemy.engine import Dialect

log = structlog.get_logger(__name__)
PREFIX = "fc1:"  # sealed values say so; anything else was written before encryption and is read as is
_keyring: MultiFernet | None = None


class DataKeyError(RuntimeError):
    """Sealed data cannot be read: no key configured, or none of the keys opens it."""


def configure(keys: list[str]) -> None:
    global _keyring  # noqa: PLW0603 - one keyring per process, set at start-up (see the module's docstring)
    _keyring = MultiFernet([Fernet(key.strip().encode()) for key in keys if key.strip()])


def keys_from(setting: str | None, key_file: Path) -> list[str]:
    """The configured keys, else the local key file (made on first use)."""
    if setting:
        return [k.strip() for k in setting.split(",") if k.strip()]
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(Fernet.generate_key().decode())
        log.warning("data_key_generated", path=str(key_file), advice="set DATA_KEYS in production")
    return [key_file.read_text().strip()]


def generate_key() -> str:
    return Fernet.generate_key().decode()


def _ring() -> MultiFernet:
    if _keyring is None:
        raise DataKeyError("no data key configured (services.crypto.configure was not called)")
    return _keyring


def seal(text: str) -> str:
    return PREFIX + _ring().encrypt(text.encode()).decode()


def reveal(value: str) -> str:
    if not value.startswith(PREFIX):
        return value
    try:
        return _ring().decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise DataKeyError("none of the configured data keys opens this value") from exc


def reveal_any(value: Any) -> Any:
    return reveal(value) if isinstance(value, str) else value


class EncryptedText(TypeDecorator[str]):
    """TEXT in the database, sealed on write and revealed on read."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else seal(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else reveal(value)
