"""Trial read models and the worker protocol bodies (field names are a public contract)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hposvc.domain.states import TrialState
from hposvc.schemas.common import Id, JSONObject, SafeText


def _finite_value(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (report a diverged trial with /fail)")
    return value


class IntermediateValue(BaseModel):
    step: int
    value: float


class TrialRead(BaseModel):
    id: int
    study_id: int
    study: str
    number: int
    state: TrialState
    params: dict[str, Any]
    values: list[float] | None
    user_attrs: dict[str, Any]
    attempt: int
    retry_of: int | None
    worker_id: int | None
    fail_reason: str | None
    pruned_step: int | None
    last_step: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime | None


class TrialDetail(TrialRead):
    intermediate_values: list[IntermediateValue]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ClaimRequest(_Body):
    worker_id: Id
    study: SafeText | None = Field(
        default=None, max_length=128, description="Only claim from the study of this name."
    )
    request_id: SafeText | None = Field(
        default=None,
        max_length=128,
        description="Idempotency key: a retried claim with the same key returns the same trial.",
    )


class ClaimedTrial(BaseModel):
    id: int
    study: str
    study_id: int
    number: int
    params: dict[str, Any]
    training: dict[str, Any]
    attempt: int
    retry_of: int | None
    lease_expires_at: datetime
    lease_seconds: float
    objectives: list[dict[str, str]]
    # False when no report can answer prune (the study has no pruner): a worker may then send
    # reports without waiting for their answers. Absent from older servers: assume it may.
    prunes: bool = True


class NextClaim(_Body):
    """The claim a worker makes when its trial ends, sent with the request that ends it.

    The server claims the worker's next trial right after that request ends the trial (a
    report answered with prune, a complete) and returns it in the answer: one round trip per
    trial less. It is the same claim as ``POST /trials/claim`` with these fields, made at the
    same moment, so the next trial is sampled knowing what a claim would know. A retried
    request replays it (``request_id``). No trial in the answer: there is none now, or the
    claim failed; the worker then claims as usual, with the same ``request_id``.
    """

    study: SafeText | None = Field(
        default=None, max_length=128, description="Only claim from the study of this name."
    )
    request_id: SafeText = Field(
        min_length=1,
        max_length=128,
        description="Idempotency key of the claim, as in POST /trials/claim.",
    )


_NEXT_CLAIM = "When this request ends the trial, claim the worker's next trial with it."


class ReportRequest(_Body):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)  # NaN gets a clear message

    worker_id: Id
    step: int = Field(ge=0, le=10_000_000)
    value: float
    next_claim: NextClaim | None = Field(default=None, description=_NEXT_CLAIM)

    _check_value = field_validator("value")(_finite_value)


class ReportResponse(BaseModel):
    should_prune: bool
    next_trial: ClaimedTrial | None = Field(
        default=None, description="The worker's next trial, claimed with ``next_claim``."
    )


class CompleteRequest(_Body):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)  # NaN gets a clear message

    worker_id: Id
    values: list[float] = Field(min_length=1, max_length=16)
    user_attrs: JSONObject = Field(default_factory=dict)
    next_claim: NextClaim | None = Field(default=None, description=_NEXT_CLAIM)

    @field_validator("values")
    @classmethod
    def _finite_values(cls, values: list[float]) -> list[float]:
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise ValueError(
                    f"values[{i}] must be a finite number (report a diverged trial with /fail)"
                )
        return values


class CompletedTrial(TrialRead):
    """The answer to a complete: the trial, and the worker's next trial if it asked for one."""

    next_trial: ClaimedTrial | None = Field(
        default=None, description="The worker's next trial, claimed with ``next_claim``."
    )


class UserAttrsRequest(_Body):
    worker_id: Id
    user_attrs: JSONObject = Field(min_length=1)


class ReleaseRequest(_Body):
    worker_id: Id
    reason: SafeText = Field(default="worker shutting down", min_length=1, max_length=4096)


class ArtifactRead(BaseModel):
    trial_id: int
    kind: str
    size: int


class FailRequest(_Body):
    worker_id: Id
    reason: SafeText = Field(min_length=1, max_length=65_536)
    user_attrs: JSONObject = Field(default_factory=dict)
    retry: bool = Field(
        default=True,
        description=(
            "False when the same parameters would fail again (the training diverged, the "
            "configuration is invalid): the trial is not run again, whatever the retry budget."
        ),
    )
