"""fit(): the training loop of one trial, read top to bottom.

Per epoch: shuffle the resident train tensors, step through index slices (no DataLoader, no
host copies, no per-batch sync), evaluate on validation under inference_mode, report the
objective to the server, update early stopping, and save a checkpoint when
``checkpoint_every_seconds`` have passed since the last one (or the store asks for one now).
The loss is summed on the device and read once per epoch, which is also where NaN/inf is
caught. With ``overlap_reports`` the report goes out in the background while the next epoch
trains (see :class:`~workers.training.pruning.ReportChannel`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from workers.training.augmentation import Augmenter
from workers.training.checkpoint import from_bytes, to_bytes
from workers.training.early_stopping import EarlyStopping
from workers.training.losses import build_loss, loss_targets
from workers.training.metrics import compute_metrics
from workers.training.optim import build_optimizer, build_scheduler, precision_context
from workers.training.pruning import ReportChannel
from workers.training.seeding import rng_state, set_rng_state

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager

    from torch import nn

    from workers.training.checkpoint import CheckpointStore
    from workers.training.config import TrainConfig
    from workers.training.data import PreparedData, Split
    from workers.training.losses import Criterion
    from workers.training.pruning import Reporter

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
_EVAL_BATCH = 2048


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial should be reported as failed."""


@dataclass
class FitResult:
    """What fit() leaves behind; the model itself ends on its best (or last) weights."""

    history: list[dict[str, float]]
    epochs_run: int
    stopped: str  # completed | early_stopped | pruned
    stop_epoch: int
    stop_reason: str
    val_metrics: dict[str, float]  # prefixed val_, of the best epoch (restore_best) or the last
    best_epoch: int | None
    resumed_from_epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def fit(
    model: nn.Module,
    data: PreparedData,
    cfg: TrainConfig,
    *,
    reporter: Reporter,
    checkpoints: CheckpointStore | None = None,
    frozen_modules: Sequence[str] = (),
    overlap_reports: bool = False,
    finishing: Callable[[nn.Module], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` as ``cfg`` says; resume from ``checkpoints`` when it has one.

    Args:
        model: on the data's device; ``cfg`` must have task defaults filled.
        data: the prepared splits.
        cfg: the trial's config.
        reporter: receives the objective after every epoch; True from it prunes the trial.
        checkpoints: where checkpoints go (None: no checkpoints).
        frozen_modules: modules kept in eval mode (frozen by transfer learning).
        overlap_reports: send each report from a background thread and train the next epoch
            meanwhile; a prune answer stops that epoch at the next batch and discards it. The
            reporter must then be callable from another thread.
        finishing: called once with the final model (best weights restored) when the run
            ends unpruned, while the last report's answer may still be on its way (the end's
            work, such as the test split's evaluation, overlaps it). If that answer prunes the
            trial, the result says so: what ``finishing`` did is then of no use.

    Returns:
        The history and how the run ended.

    Raises:
        TrainingDiverged: the train or validation loss became NaN or infinite.
        Exception: whatever the reporter or the checkpoint store raises.
    """
    device = data.train.x.device
    criterion = build_loss(cfg, data)
    x_train, y_train = data.train.x, loss_targets(cfg, data.train.y)
    n = x_train.shape[0]
    batch_size = min(cfg.batch_size, n)
    steps_per_epoch = math.ceil(n / batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    autocast, scaler = precision_context(cfg.precision, device)
    augment = Augmenter(cfg.augment, tuple(x_train.shape[1:])) if cfg.augment else None
    l1_weights = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    frozen = [model.get_submodule(name) for name in frozen_modules]
    metric = cfg.objective_metric
    es = cfg.early_stopping
    stopper = EarlyStopping(
        metric,
        cfg.objective_direction,
        patience=es.patience if es else None,
        min_delta=es.min_delta if es else 0.0,
    )

    history: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    stop: dict[str, Any] | None = None  # {"how", "epoch", "reason"} once the run has ended
    start_epoch, resumed_from = 1, None

    blob = checkpoints.load() if checkpoints is not None else None
    if blob is not None:
        state = from_bytes(blob)
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {state.get('version')} is not supported")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        stopper.load_state_dict(state["early_stopping"])
        best_state = state["best_model"]
        history = state["history"]
        stop = state["stop"]
        set_rng_state(state["rng"])
        resumed_from = state["epoch"]
        start_epoch = resumed_from + 1
        logger.info("resuming from the checkpoint of epoch %d", resumed_from)

    def pruned_at(step: int) -> dict[str, Any]:
        value = next(h[metric] for h in reversed(history) if h["epoch"] == step)
        reason = f"pruned by the server at epoch {step} ({metric} {value:.6g})"
        return {"how": "pruned", "epoch": step, "reason": reason}

    reports = ReportChannel(reporter, overlap=overlap_reports)
    last_checkpoint = time.monotonic()
    epoch = start_epoch - 1
    try:
        for epoch in range(start_epoch, cfg.max_epochs + 1):
            if stop is not None:
                break
            # ---- train one epoch (overlapped: until the last report's answer says prune)
            model.train()
            for module in frozen:
                module.eval()
            started = time.perf_counter()
            batch_losses = []  # detached, on the device: summed once at the end of the epoch
            perm = torch.randperm(n, device=device)
            for start in range(0, n, batch_size):
                if reports.stops_epoch():
                    break
                idx = perm[start : start + batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if augment is not None:
                    xb = augment(xb)
                with autocast():
                    loss = criterion(model(xb), yb)
                if cfg.l1:
                    loss = loss + cfg.l1 * torch.stack([w.abs().sum() for w in l1_weights]).sum()
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if cfg.grad_clip:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                batch_losses.append(loss.detach())
            train_loss = math.nan  # an epoch cut short by a prune is discarded just below
            if len(batch_losses) == steps_per_epoch:
                sizes = torch.full((steps_per_epoch,), float(batch_size), device=device)
                sizes[-1] = n - batch_size * (steps_per_epoch - 1)
                train_loss = (torch.stack(batch_losses).float() @ sizes).item() / n  # the sync
            train_seconds = time.perf_counter() - started
            # The previous epoch's answer; a prune discards this epoch, trained or partial.
            if (step := reports.settle()) is not None:
                stop = pruned_at(step)
                break
            if not math.isfinite(train_loss):
                raise TrainingDiverged(
                    f"train loss is {train_loss} at epoch {epoch} (lr {cfg.lr:g}); lower lr or "
                    "set grad_clip"
                )

            # ---- evaluate, report, early stopping
            started = time.perf_counter()
            val = evaluate(model, data.val, data, criterion, cfg, autocast, prefix="val_")
            val_seconds = time.perf_counter() - started
            if not math.isfinite(val["val_loss"]):
                raise TrainingDiverged(f"validation loss is {val['val_loss']} at epoch {epoch}")
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "train_seconds": train_seconds,
                "samples_per_second": n / train_seconds if train_seconds > 0 else math.inf,
                "validation_seconds": val_seconds,
                **val,
            }
            history.append(record)
            value = val[metric]
            logger.debug("epoch %d: train_loss %.4g, %s %.4g", epoch, train_loss, metric, value)

            if reports.send(epoch, value):
                stop = pruned_at(epoch)
                break
            should_stop, reason = stopper.update(value, epoch)
            if stopper.improved and cfg.restore_best:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if should_stop:
                stop = {"how": "early_stopped", "epoch": epoch, "reason": reason}

            # ---- checkpoint: on the cadence, or now when the holder asks (worker stopping)
            save = checkpoints is not None and (
                time.monotonic() - last_checkpoint >= cfg.checkpoint_every_seconds
                or checkpoints.requested()
            )
            # A checkpoint never gets ahead of the server's answers, nor does the trial's end
            # (with ``finishing``, the last answer is awaited once that has run, below).
            ending = stop is not None or epoch == cfg.max_epochs
            if (save or (ending and finishing is None)) and (step := reports.settle()) is not None:
                stop = pruned_at(step)
                break
            if save and checkpoints is not None:
                checkpoints.save(
                    to_bytes(
                        {
                            "version": CHECKPOINT_VERSION,
                            "epoch": epoch,
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict() if scheduler is not None else None,
                            "scaler": scaler.state_dict() if scaler is not None else None,
                            "early_stopping": stopper.state_dict(),
                            "best_model": best_state,
                            "history": history,
                            "stop": stop,
                            "rng": rng_state(),
                        }
                    )
                )
                last_checkpoint = time.monotonic()
        if finishing is not None and (stop is None or stop["how"] != "pruned"):
            if cfg.restore_best and best_state is not None:
                model.load_state_dict(best_state)
            finishing(model)
            if (step := reports.settle()) is not None:
                stop = pruned_at(step)
    finally:
        reports.close()

    # ---- end: pick the epoch whose weights and metrics the trial keeps
    if stop is None:
        last = history[-1]["epoch"] if history else epoch
        stop = {
            "how": "completed",
            "epoch": last,
            "reason": f"reached max_epochs={cfg.max_epochs}",
        }
    best_epoch = stopper.best_epoch
    chosen = history[-1] if history else {}
    if cfg.restore_best and best_state is not None and stop["how"] != "pruned":
        if finishing is None:  # else loaded before it ran
            model.load_state_dict(best_state)
        chosen = next((h for h in history if h["epoch"] == best_epoch), chosen)
    logger.info("training %s at epoch %d: %s", stop["how"], stop["epoch"], stop["reason"])
    return FitResult(
        history=history,
        epochs_run=int(history[-1]["epoch"]) if history else 0,
        stopped=stop["how"],
        stop_epoch=int(stop["epoch"]),
        stop_reason=stop["reason"],
        val_metrics={k: v for k, v in chosen.items() if k.startswith("val_")},
        best_epoch=best_epoch,
        resumed_from_epoch=resumed_from,
    )


def evaluate(
    model: nn.Module,
    split: Split,
    data: PreparedData,
    criterion: Criterion,
    cfg: TrainConfig,
    autocast: Callable[[], AbstractContextManager[object]],
    *,
    prefix: str,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on ``split``, keys prefixed (``val_``/``test_``)."""
    model.eval()
    with torch.inference_mode(), autocast():
        outputs = torch.cat(
            [model(split.x[i : i + _EVAL_BATCH]) for i in range(0, len(split), _EVAL_BATCH)]
        )
        loss = criterion(outputs.float(), loss_targets(cfg, split.y)).item()
    scores = compute_metrics(
        outputs,
        split.y,
        task=data.task,
        num_classes=data.num_classes,
        target_mean=data.target_mean,
        target_std=data.target_std,
    )
    return {f"{prefix}loss": loss, **{f"{prefix}{k}": v for k, v in scores.items()}}
