"""run_trial(): the one entry point the worker calls per trial."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from workers.training.checkpoint import load_state_dict_file, to_bytes
from workers.training.config import TrainConfig, merge
from workers.training.data import load_data
from workers.training.entrypoint import run_entrypoint
from workers.training.loop import evaluate, fit
from workers.training.losses import build_loss, output_dim
from workers.training.models import build_model, freeze
from workers.training.optim import precision_context
from workers.training.results import TrialResult
from workers.training.seeding import seed_everything

if TYPE_CHECKING:
    from torch import nn

    from workers.training.checkpoint import CheckpointStore
    from workers.training.pruning import Reporter

logger = logging.getLogger(__name__)


def run_trial(
    training: Mapping[str, Any],
    params: Mapping[str, Any],
    reporter: Reporter,
    checkpoints: CheckpointStore | None,
    device: str = "cpu",
    *,
    overlap_reports: bool = False,
    model_ready: Callable[[bytes], None] | None = None,
) -> TrialResult:
    """Train and evaluate one trial; resume from ``checkpoints`` when it holds one.

    Args:
        training: the study's ``training`` section.
        params: the trial's hyperparameters; they override ``training``.
        reporter: gets the objective after every epoch and may prune the trial.
        checkpoints: where checkpoints are kept (None: no checkpoints).
        device: torch device string ("cpu", "cuda", "cuda:1").
        overlap_reports: the built-in loop reports in the background while the next epoch
            trains (see :func:`~workers.training.loop.fit`); user objectives report as they do.
        model_ready: called with the final model (``TrialResult.model_state``) once training
            is over, before the test split is evaluated, so the caller can upload it meanwhile
            (the evaluation does not change the model). Both overlap the answer to the last
            report: a trial that answer prunes has had its model passed here all the same
            (its result keeps neither model nor test metrics).

    Returns:
        The result; a pruned trial returns normally with ``stopped="pruned"``.

    Raises:
        ValueError: the config is invalid; the message names the key.
        TrainingDiverged: the loss became NaN or infinite.
    """
    if "entrypoint" in params or "entrypoint" in training:
        return run_entrypoint(training, params, reporter, checkpoints, device)

    cfg = TrainConfig.from_dict(merge(training, params))
    seed_everything(cfg.seed, device)
    data = load_data(cfg, device)
    cfg = cfg.with_task_defaults(data.task)
    model = build_model(cfg, data.input_shape, output_dim(cfg, data)).to(device)
    frozen: list[str] = []
    if cfg.init_checkpoint is not None:
        _warm_start(model, cfg.init_checkpoint)
        if cfg.freeze:
            frozen = freeze(model, cfg.freeze)

    end: dict[str, Any] = {}  # the final model's bytes and test metrics

    def finishing(final: nn.Module) -> None:
        end["model_state"] = to_bytes({k: v.detach().cpu() for k, v in final.state_dict().items()})
        if model_ready is not None:
            model_ready(end["model_state"])
        if data.test is not None:
            autocast, _ = precision_context(cfg.precision, torch.device(device))
            criterion = build_loss(cfg, data)
            end["test"] = evaluate(
                final, data.test, data, criterion, cfg, autocast, prefix="test_"
            )

    result = fit(
        model,
        data,
        cfg,
        reporter=reporter,
        checkpoints=checkpoints,
        frozen_modules=frozen,
        overlap_reports=overlap_reports,
        finishing=finishing,
    )

    model_state = None  # a pruned trial keeps no model
    metrics = dict(result.val_metrics)
    if result.stopped != "pruned":
        model_state = end["model_state"]
        metrics.update(end.get("test", {}))
    values = [metrics.get(name, float("nan")) for name in cfg.objective]
    return TrialResult(
        values=values,
        metrics=metrics,
        epochs_run=result.epochs_run,
        stopped=result.stopped,
        stop_epoch=result.stop_epoch,
        stop_reason=result.stop_reason,
        history=result.history,
        model_state=model_state,
        resumed_from_epoch=result.resumed_from_epoch,
    )


def _warm_start(model: nn.Module, path: str) -> None:
    """Copy the tensors of ``path`` whose name and shape match (a new head stays random).

    Raises:
        ValueError: the file holds no tensor that fits the model.
    """
    source = load_state_dict_file(path)
    target = model.state_dict()
    fitting = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if not fitting:
        raise ValueError(f"training config key 'init_checkpoint': no tensor of {path} fits")
    skipped = sorted(set(target) - set(fitting))
    model.load_state_dict(fitting, strict=False)
    logger.info(
        "warm start from %s: %d tensors loaded, %d kept (%s)",
        path,
        len(fitting),
        len(skipped),
        ", ".join(skipped[:5]),
    )
