"""Settings, read only from the environment (and `.env`); see `.env.example` for each one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR = PROJECT_ROOT / "var"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    database_url: str = f"sqlite+aiosqlite:///{DEFAULT_VAR / 'fieldcheck.db'}"
    redis_url: str | None = None
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    default_locale: Literal["ru", "en"] = "ru"

    webhook_base_url: str | None = None
    webhook_path: str = "/telegram/webhook"
    webhook_secret: SecretStr | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080

    storage_root: Path = DEFAULT_VAR / "audio"
    voice_backend: Literal["auto", "speechbrain", "resemblyzer"] = "auto"
    voice_model_source: str = "speechbrain/spkrec-ecapa-voxceleb"
    voice_model_dir: Path = DEFAULT_VAR / "models" / "spkrec-ecapa-voxceleb"
    voice_precision: Literal["bf16", "fp32"] = "bf16"
    voice_runtime: Literal["torch", "compiled", "openvino"] = "openvino"
    sandbox_dir: Path = DEFAULT_VAR / "sandbox"
    throttle_rate_per_second: float = 2.0
    throttle_burst: int = 5
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"
    migrate_on_start: bool = True

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
