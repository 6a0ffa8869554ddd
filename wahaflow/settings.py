"""Every setting of design.md §3 in one typed place, read from the environment (and a `.env` file)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """wahaflow's settings. Secrets are `SecretStr`, so they never print in logs or reprs."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    waha_url: str = Field("http://127.0.0.1:3000", validation_alias="WAHA_URL")
    waha_api_key: SecretStr | None = Field(None, validation_alias="WAHA_API_KEY")
    waha_sessions_raw: str = Field("default", validation_alias="WAHA_SESSIONS")
    database_url: SecretStr | None = Field(None, validation_alias="WAHAFLOW_DATABASE_URL")
    db_schema: str = Field("wahaflow", validation_alias="WAHAFLOW_SCHEMA")
    session_gap_minutes: float = Field(30, validation_alias="WAHAFLOW_SESSION_GAP_MINUTES", gt=0)
    chunk_size: int = Field(100, validation_alias="WAHAFLOW_CHUNK_SIZE", gt=0)
    webhook_hmac_key: SecretStr | None = Field(None, validation_alias="WAHAFLOW_WEBHOOK_HMAC_KEY")
    webhook_host: str = Field("127.0.0.1", validation_alias="WAHAFLOW_WEBHOOK_HOST")
    webhook_port: int = Field(8000, validation_alias="WAHAFLOW_WEBHOOK_PORT")
    home: Path = Field(Path(".wahaflow"), validation_alias="WAHAFLOW_HOME")
    waha_concurrency: int = Field(32, validation_alias="WAHAFLOW_WAHA_CONCURRENCY", gt=0)
    waha_timeout_seconds: float = Field(30.0, validation_alias="WAHAFLOW_WAHA_TIMEOUT_SECONDS", gt=0)
    waha_max_attempts: int = Field(6, validation_alias="WAHAFLOW_WAHA_MAX_ATTEMPTS", gt=0)
    waha_retry_seconds: float = Field(120.0, validation_alias="WAHAFLOW_WAHA_RETRY_SECONDS", ge=0)
    step_retries: int = Field(3, validation_alias="WAHAFLOW_STEP_RETRIES", ge=0)
    chunks_per_run: int = Field(25, validation_alias="WAHAFLOW_CHUNKS_PER_RUN", gt=0)
    stream_min_chats: int = Field(100, validation_alias="WAHAFLOW_STREAM_MIN_CHATS", gt=0)
    activity_interval_seconds: int = Field(300, validation_alias="WAHAFLOW_ACTIVITY_INTERVAL_SECONDS", gt=0)

    @field_validator("db_schema")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        if not value or len(value) > 63 or "\x00" in value:
            raise ValueError("WAHAFLOW_SCHEMA must be a Postgres identifier of 1-63 characters")
        return value

    @cached_property
    def waha_sessions(self) -> list[str]:
        """The WAHA session names to import, in the order given."""
        return [s.strip() for s in self.waha_sessions_raw.split(",") if s.strip()]

    @property
    def session_gap_seconds(self) -> int:
        return int(self.session_gap_minutes * 60)

    @property
    def home_dir(self) -> Path:
        """`WAHAFLOW_HOME` as an absolute path (created on first use)."""
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def api_key(self) -> str | None:
        return self.waha_api_key.get_secret_value() if self.waha_api_key else None


def get_settings() -> Settings:
    """Settings read fresh from the environment (cheap; no caching so tests can monkeypatch env)."""
    return Settings()
