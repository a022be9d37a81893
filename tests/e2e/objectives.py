"""User objectives the end-to-end tests run through real workers."""

from __future__ import annotations

import time
from typing import Any


def flaky(params: dict[str, Any], ctx: Any) -> float:
    """Fails for mode == "boom"; otherwise reports a few steps and returns a value."""
    if params["mode"] == "boom":
        raise RuntimeError("the objective exploded on purpose")
    value = 0.0
    for step in range(1, 4):
        value = params["x"] * step
        ctx.report(step, value)
    return value


def slow_steps(params: dict[str, Any], ctx: Any) -> float:
    """Ten steps of ``step_seconds`` each, checkpointing its step counter after every one."""
    saved = ctx.load_checkpoint()
    start = saved["step"] + 1 if saved else 1
    value = params["x"]
    for step in range(start, 11):
        time.sleep(float(ctx.training["step_seconds"]))
        value = params["x"] + 1.0 / step
        ctx.report(step, value)
        ctx.save_checkpoint({"step": step, "started_at": start})
    return value
