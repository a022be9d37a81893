"""TrialResult: what one trial hands back to the worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrialResult:
    """The outcome of :func:`workers.training.runner.run_trial`.

    Attributes:
        values: objective values, one per objective (normally one).
        metrics: ``val_*`` metrics of the best (or last) epoch and ``test_*`` metrics.
        epochs_run: the last epoch trained (or the last step a user objective reported).
        stopped: completed | early_stopped | pruned.
        stop_epoch: the epoch at which the run stopped.
        stop_reason: why, in words.
        history: one dict per epoch (train loss, lr, throughput, val metrics).
        model_state: torch.save bytes of the final model's state_dict (None for user code
            and for a pruned trial).
        resumed_from_epoch: the checkpoint epoch the run continued from, or None.
    """

    values: list[float]
    metrics: dict[str, float]
    epochs_run: int
    stopped: str
    stop_epoch: int
    stop_reason: str
    history: list[dict[str, Any]] = field(default_factory=list)
    model_state: bytes | None = None
    resumed_from_epoch: int | None = None
