"""User objectives the benchmarks run through real workers (``training.entrypoint``).

Workers load this file by path (``benchmarks/objectives.py:sleep_steps``, relative to the
repository root, which is the worker's working directory) and import it again for every
trial, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import time
from typing import Any


def sleep_steps(params: dict[str, Any], ctx: Any) -> float:
    """``steps`` steps of ``step_seconds`` of sleep each (default 10 x 0.1 s = 1 s), reporting
    after every step: a trial whose cost is known exactly, so the rest is overhead."""
    steps = int(ctx.training.get("steps", 10))
    step_seconds = float(ctx.training.get("step_seconds", 0.1))
    value = 0.0
    for step in range(1, steps + 1):
        time.sleep(step_seconds)
        value = (params["x"] - 0.3) ** 2 + 1.0 / step
        ctx.report(step, value)
    return value
