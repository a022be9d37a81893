"""Shared helpers of the training-core tests: tiny configs and scripted reporters.

A plain module (not conftest.py) so the names stay unique across test folders.
"""

from __future__ import annotations

from typing import Any

from workers.training.pruning import NullReporter
from workers.training.results import TrialResult
from workers.training.runner import run_trial

IRIS = {"dataset": "iris", "model": "mlp", "max_epochs": 3, "width": 16, "batch_size": 32}
DIGITS_CNN = {
    "dataset": "digits",
    "model": "cnn",
    "max_epochs": 2,
    "channels": 8,
    "width": 32,
    "layers": 1,
}


class ScriptedReporter:
    """Prunes at ``prune_at``; raises ``crash_at`` (a lost worker) when that step is reported."""

    def __init__(self, prune_at: int | None = None, crash_at: int | None = None) -> None:
        self.prune_at = prune_at
        self.crash_at = crash_at
        self.reports: list[tuple[int, float]] = []

    def report(self, step: int, value: float) -> bool:
        if step == self.crash_at:
            raise ConnectionError("worker lost")
        self.reports.append((step, value))
        return step == self.prune_at


def train(base: dict[str, Any] | None = None, **params: Any) -> TrialResult:
    """run_trial on ``base`` (IRIS by default) with ``params``, no checkpoints."""
    return run_trial(base if base is not None else IRIS, params, NullReporter(), None)
