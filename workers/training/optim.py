"""Optimizers, learning-rate schedules (stepped per batch) and mixed precision."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import nn

    from workers.training.config import TrainConfig

logger = logging.getLogger(__name__)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters (frozen ones are left out).

    Raises:
        ValueError: nothing is trainable (names ``freeze``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("training config key 'freeze': every parameter is frozen")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"training config key 'optimizer': unknown {cfg.optimizer!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-batch LR schedule, or None for a constant LR without warmup."""
    total = cfg.max_epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=cfg.lr,
            total_steps=total,
            pct_start=warmup / total if warmup else 0.3,
            cycle_momentum=False,
        )
    if cfg.schedule == "none" and not warmup:
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_factor(cfg.schedule, total, warmup, steps_per_epoch, cfg)
    )


def _lr_factor(
    schedule: str, total: int, warmup: int, steps_per_epoch: int, cfg: TrainConfig
) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "step":
            return cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size)
        if schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def precision_context(
    precision: str, device: torch.device
) -> tuple[Callable[[], contextlib.AbstractContextManager[object]], torch.amp.GradScaler | None]:
    """(autocast context factory, grad scaler or None) for ``precision`` on ``device``.

    Mixed precision runs only on CUDA; elsewhere training stays fp32 and a note is logged.
    """
    if precision == "fp32":
        return contextlib.nullcontext, None
    if device.type != "cuda":
        logger.info("precision %s needs CUDA; training in fp32 on %s", precision, device)
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def autocast() -> contextlib.AbstractContextManager[object]:
        return torch.autocast(device_type="cuda", dtype=dtype)

    return autocast, scaler
