"""Worker registration and read models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hposvc.schemas.common import SafeText


class WorkerRegister(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SafeText = Field(min_length=1, max_length=128)
    host: SafeText = Field(min_length=1, max_length=255)
    slots: int = Field(default=1, ge=1, le=1024)
    devices: list[SafeText] = Field(default_factory=list, max_length=256)


class WorkerRegistered(BaseModel):
    id: int


class WorkerRead(BaseModel):
    id: int
    name: str
    host: str
    slots: int
    devices: list[str]
    registered_at: datetime
    last_heartbeat_at: datetime
    online: bool
    running_trials: list[int]


class HeartbeatResponse(BaseModel):
    id: int
    leases_extended: int
    lease_expires_at: datetime | None
