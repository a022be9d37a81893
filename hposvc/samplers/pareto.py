"""Pareto front of finished multi-objective trials, computed by Optuna."""

from __future__ import annotations

import numpy as np
from optuna.study._multi_objective import _is_pareto_front


def pareto_front(values: list[list[float]], directions: list[str]) -> list[int]:
    """Indices (into ``values``) of the non-dominated points."""
    if not values:
        return []
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    losses = np.asarray(values, dtype=float) * signs
    return [
        int(i) for i in np.flatnonzero(_is_pareto_front(losses, assume_unique_lexsorted=False))
    ]
