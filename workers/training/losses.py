"""Loss functions and the target layout each one needs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from workers.training.config import TrainConfig
    from workers.training.data import PreparedData


def output_dim(cfg: TrainConfig, data: PreparedData) -> int:
    """Number of model outputs: one logit per class, one for bce and regression.

    Raises:
        ValueError: bce on more than two classes (names ``loss``).
    """
    if data.task == "regression":
        return 1
    if cfg.loss == "bce":
        if data.num_classes != 2:
            raise ValueError(
                f"training config key 'loss': bce needs two classes, the data has "
                f"{data.num_classes}; use cross_entropy"
            )
        return 1
    return data.num_classes


Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def build_loss(cfg: TrainConfig, data: PreparedData) -> Criterion:
    """The criterion for ``cfg.loss`` (already defaulted by ``TrainConfig.with_task_defaults``).

    A functional with its options bound, not an nn.Module: no module-call overhead per batch.
    """
    weights = data.class_weights
    if cfg.loss == "cross_entropy":
        if weights is None and not cfg.label_smoothing:
            return F.cross_entropy
        return functools.partial(
            F.cross_entropy, weight=weights, label_smoothing=cfg.label_smoothing
        )
    if cfg.loss == "bce":
        if weights is None:
            return F.binary_cross_entropy_with_logits
        pos_weight = (weights[1] / weights[0]).reshape(1)
        return functools.partial(F.binary_cross_entropy_with_logits, pos_weight=pos_weight)
    if cfg.loss == "mse":
        return F.mse_loss
    if cfg.loss == "mae":
        return F.l1_loss
    if cfg.loss == "huber":
        return F.huber_loss
    raise ValueError(f"training config key 'loss': unknown loss {cfg.loss!r}")


def loss_targets(cfg: TrainConfig, y: torch.Tensor) -> torch.Tensor:
    """Targets in the layout of the criterion (bce wants float (n, 1)); done once per split."""
    if cfg.loss == "bce":
        return y.to(torch.float32).reshape(-1, 1)
    return y
