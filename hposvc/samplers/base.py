"""Plain data crossing between the services and the Optuna-backed cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hposvc.domain.states import TrialState


@dataclass(frozen=True)
class TrialRecord:
    """What the database holds of one trial, as the sampler and pruner need it."""

    number: int
    state: TrialState
    params: dict[str, Any]
    distributions: dict[str, str]
    values: list[float] | None
    intermediate_values: dict[int, float]
    system_attrs: dict[str, Any]
    fixed_params: dict[str, Any] | None = None


@dataclass(frozen=True)
class AskResult:
    """A trial the sampler produced: to be written to the database as RUNNING."""

    number: int
    params: dict[str, Any]
    distributions: dict[str, str]
    system_attrs: dict[str, Any]
    grid_id: int | None
    was_waiting: bool
    study_system_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneResult:
    should_prune: bool
    system_attrs: dict[str, Any]
