"""EarlyStopping: stop when the objective stops improving; also tracks the best epoch."""

from __future__ import annotations

import math
from typing import Any


class EarlyStopping:
    """Patience/min-delta rule on one metric, in the metric's direction.

    With ``patience=None`` it never stops and only tracks the best value and epoch.
    """

    def __init__(
        self,
        metric: str,
        direction: str,
        patience: int | None = None,
        min_delta: float = 0.0,
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
        self.metric = metric
        self.direction = direction
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.improved = False

    def _is_better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.direction == "maximize":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: float, epoch: int) -> tuple[bool, str]:
        """Feed the metric of ``epoch``.

        Returns:
            (stop, reason): stop is True when patience ran out; reason says why.
        """
        self.improved = self._is_better(value)
        if self.improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return False, ""
        self.wait += 1
        if self.patience is not None and self.wait >= self.patience:
            best = "none" if self.best is None else f"{self.best:.6g} at epoch {self.best_epoch}"
            return True, (
                f"{self.metric} did not improve by more than {self.min_delta:g} for "
                f"{self.wait} epochs (best {best})"
            )
        return False, ""

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.wait = state["wait"]
