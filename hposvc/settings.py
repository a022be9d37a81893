"""Server settings from ``HPOSVC_*`` environment variables (the only code that reads them)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Everything the server can be told from outside."""

    model_config = SettingsConfigDict(env_prefix="HPOSVC_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///hposvc.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    token: str | None = Field(
        default=None, description="Bearer token required on /api/v1 (mandatory off loopback)."
    )
    artifacts_dir: str = "hposvc-artifacts"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_artifact_bytes: int = Field(default=256 * 1_048_576, ge=1024)
    lease_check_seconds: float = Field(default=1.0, gt=0)
    max_cached_studies: int = Field(
        default=64,
        ge=1,
        description="Studies whose sampler state stays in memory; others are rebuilt on use.",
    )
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _use_psycopg_driver(cls, url: str) -> str:
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgres://")
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        if not (url.startswith("sqlite://") or url.startswith("postgresql+psycopg://")):
            raise ValueError("database_url must be a sqlite:// or postgresql:// URL")
        return url

    @model_validator(mode="after")
    def _token_required_off_loopback(self) -> Settings:
        if not _is_loopback(self.host) and not self.token:
            raise ValueError(
                f"refusing to listen on {self.host} without a token: set HPOSVC_TOKEN"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
