"""Worker daemon settings (``HPOSVC_WORKER_*`` environment variables or CLI options)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HPOSVC_WORKER_", extra="ignore")

    server_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    name: str | None = Field(default=None, description="Defaults to <hostname>-<pid>.")
    devices: str = Field(default="auto", description="auto | cpu | comma-separated GPU ids")
    slots_per_device: int = Field(default=1, ge=1, le=64)
    threads_per_slot: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="torch threads per slot; default: the machine's cores shared among the slots.",
    )
    study: str | None = None
    poll_seconds: float = Field(default=1.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    unreachable_timeout_seconds: float = Field(
        default=900.0, gt=0, description="How long to keep retrying a server that is down."
    )
    max_trials: int | None = Field(
        default=None, ge=1, description="Each slot stops after this many trials (tests, demos)."
    )
    log_level: str = "INFO"
    exit_when_idle_seconds: float | None = Field(
        default=None, gt=0, description="Stop once no work has come for this long."
    )
