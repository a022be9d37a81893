"""Study spec (the public file format users keep) and study read models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hposvc.domain.states import StudyState, TrialState
from hposvc.schemas.common import JSONObject
from hposvc.schemas.search_space import SearchSpace
from hposvc.schemas.trials import TrialRead

STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
SamplerName = Literal["grid", "random", "tpe", "gp", "cmaes", "qmc", "nsga2"]
PrunerName = Literal[
    "none", "median", "percentile", "successive_halving", "hyperband", "threshold"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Objective(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
    direction: Literal["minimize", "maximize"]


class SamplerSpec(_Strict):
    name: SamplerName = "tpe"
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    options: JSONObject = Field(default_factory=dict)


class PrunerSpec(_Strict):
    name: PrunerName = "none"
    options: JSONObject = Field(default_factory=dict)


class Budget(_Strict):
    max_trials: int = Field(default=100, ge=1, le=1_000_000)
    max_concurrent: int | None = Field(default=None, ge=1, le=100_000)
    max_retries: int = Field(default=1, ge=0, le=100)
    lease_seconds: float = Field(default=120.0, ge=1, le=7 * 86400)
    time_limit_seconds: float | None = Field(default=None, gt=0, le=365 * 86400)


class StudySpec(_Strict):
    """A study as users write it, in JSON or YAML. The field names are a public contract."""

    name: str = Field(pattern=STUDY_NAME)
    objectives: list[Objective] = Field(min_length=1, max_length=16)
    search_space: SearchSpace
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    budget: Budget = Field(default_factory=Budget)
    training: JSONObject = Field(default_factory=dict)

    @field_validator("objectives")
    @classmethod
    def _unique_objectives(cls, objectives: list[Objective]) -> list[Objective]:
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError("objective names must be unique")
        return objectives

    @model_validator(mode="after")
    def _pruning_needs_one_objective(self) -> StudySpec:
        if len(self.objectives) > 1 and self.pruner.name != "none":
            raise ValueError("pruner: pruning needs a single objective (use name: none)")
        return self

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]


class StudyAction(_Strict):
    action: Literal["pause", "resume", "stop"]


class StudyRead(BaseModel):
    id: int
    name: str
    state: StudyState
    spec: StudySpec
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    n_trials: int = Field(description="Trials created so far (retries included).")
    budget_used: int = Field(description="Trials that count against budget.max_trials.")
    version: int = Field(description="Grows with every change to the study's trials.")


class StudySummary(StudyRead):
    counts: dict[TrialState, int]
    best_trial: TrialRead | None = None
    pareto_front: list[TrialRead] | None = None


class EnqueueRequest(_Strict):
    params: JSONObject = Field(min_length=1)
    user_attrs: JSONObject = Field(default_factory=dict)
