"""User code the tests import by ``module:attr`` path (user models and objectives)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class TinyNet(nn.Module):
    """A user model: built as ``TinyNet(input_shape, output_dim, **model_options)``."""

    def __init__(self, input_shape: tuple[int, ...], output_dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), hidden),
            nn.ReLU(),
            nn.Linear(hidden, output_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NaNNet(TinyNet):
    """Outputs NaN: the loop must raise TrainingDiverged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * float("nan")


def objective(params: dict[str, Any], ctx: Any) -> float:
    """Reports ``1 - x / step`` for ``steps`` steps and returns the last value."""
    value = 0.0
    start = 1
    saved = ctx.load_checkpoint()
    if saved is not None:
        start = saved["step"] + 1
    for step in range(start, params.get("steps", 3) + 1):
        value = 1.0 - params["x"] / step
        ctx.report(step, value)
        if ctx.should_checkpoint:
            ctx.save_checkpoint({"step": step})
    return value


def objective_dict(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    ctx.report(1, 0.5)
    return {"values": [params["a"], params["b"]], "size": 3}


def objective_bad(params: dict[str, Any], ctx: Any) -> str:  # noqa: ARG001
    return "not a number"
