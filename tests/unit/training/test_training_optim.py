from __future__ import annotations

import logging
import math

import pytest
import torch
from training_helpers import IRIS, train

from workers.training.config import TrainConfig
from workers.training.optim import build_optimizer, build_scheduler
from workers.training.pruning import NullReporter
from workers.training.runner import run_trial

REGRESSION = {"dataset": "diabetes", "model": "mlp", "max_epochs": 3, "width": 16}


@pytest.mark.parametrize(
    ("optimizer", "kind"),
    [
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_each_optimizer_learns_iris(optimizer: str, kind: type) -> None:
    cfg = TrainConfig.from_dict({**IRIS, "optimizer": optimizer, "momentum": 0.9})
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    assert type(opt) is kind
    lr = 0.05 if optimizer == "sgd" else 0.01
    result = train(optimizer=optimizer, lr=lr, momentum=0.9, max_epochs=15)
    assert result.metrics["test_accuracy"] > 0.8


def test_sgd_nesterov_and_weight_decay_reach_the_optimizer() -> None:
    cfg = TrainConfig.from_dict(
        {**IRIS, "optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}
    )
    group = build_optimizer(torch.nn.Linear(2, 2), cfg).param_groups[0]
    assert (group["nesterov"], group["momentum"], group["weight_decay"]) == (True, 0.9, 0.01)


def _lrs(**raw: object) -> list[float]:
    cfg = TrainConfig.from_dict({"dataset": "iris", "lr": 1.0, "max_epochs": 10, **raw})
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = build_scheduler(opt, cfg, steps_per_epoch=2)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return lrs


def test_schedules() -> None:
    assert _lrs() == [1.0] * 20
    step = _lrs(schedule="step", step_size=3, gamma=0.5)
    assert step[0] == step[5] == 1.0 and step[6] == 0.5 and step[12] == 0.25
    cosine = _lrs(schedule="cosine")
    assert cosine[0] == 1.0 and cosine[-1] < 0.01 and cosine == sorted(cosine, reverse=True)
    warm = _lrs(schedule="cosine", warmup_epochs=2)
    assert warm[:4] == [0.25, 0.5, 0.75, 1.0]
    assert _lrs(warmup_epochs=1)[:3] == [0.5, 1.0, 1.0]
    onecycle = _lrs(schedule="onecycle")
    peak = onecycle.index(max(onecycle))
    assert 3 <= peak <= 8 and onecycle[0] < 0.1 and onecycle[-1] < 0.01
    assert max(onecycle) == pytest.approx(1.0, rel=0.05)


def test_schedule_runs_in_training_and_is_logged_in_history() -> None:
    result = train(schedule="step", step_size=1, gamma=0.5, lr=0.01)
    assert [h["lr"] for h in result.history] == pytest.approx([0.005, 0.0025, 0.00125])


@pytest.mark.parametrize(
    ("base", "loss", "extra"),
    [
        (IRIS, "cross_entropy", {"label_smoothing": 0.1}),
        ({**IRIS, "dataset": "breast_cancer"}, "bce", {}),
        (REGRESSION, "mse", {}),
        (REGRESSION, "mae", {}),
        (REGRESSION, "huber", {}),
    ],
)
def test_losses(base: dict[str, object], loss: str, extra: dict[str, object]) -> None:
    result = train(base, loss=loss, **extra)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    key = "val_accuracy" if loss in ("cross_entropy", "bce") else "val_mse"
    assert result.values == [result.metrics[key]]


def test_label_smoothing_raises_the_floor_of_the_loss() -> None:
    plain = train(max_epochs=20, lr=0.03)
    smooth = train(max_epochs=20, lr=0.03, label_smoothing=0.3)
    assert smooth.history[-1]["train_loss"] > plain.history[-1]["train_loss"] + 0.2


def test_bce_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="'loss'"):
        train(loss="bce")


def _first_weight_norm(**params: object) -> float:
    result = train(IRIS, max_epochs=10, lr=0.01, **params)
    state = torch.load(__import__("io").BytesIO(result.model_state), weights_only=True)
    return float(state["body.0.weight"].abs().sum())


def test_l1_and_weight_decay_shrink_weights() -> None:
    base = _first_weight_norm()
    assert _first_weight_norm(l1=0.01) < 0.8 * base
    assert _first_weight_norm(optimizer="adamw", weight_decay=5.0) < 0.8 * base


def test_grad_clip_limits_the_update() -> None:
    free = train(optimizer="sgd", lr=1.0, max_epochs=1, restore_best=False)
    clipped = train(optimizer="sgd", lr=1.0, max_epochs=1, restore_best=False, grad_clip=1e-6)
    start = train(optimizer="sgd", lr=1e-12, max_epochs=1, restore_best=False)
    load = lambda r: torch.load(__import__("io").BytesIO(r.model_state), weights_only=True)  # noqa: E731
    moved = lambda r: (load(r)["head.weight"] - load(start)["head.weight"]).abs().max()  # noqa: E731
    assert moved(clipped) < 1e-4 < moved(free)


def test_mixed_precision_on_cpu_runs_fp32_with_a_note(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="workers.training.optim"):
        result = train(precision="bf16")
    assert "needs CUDA" in caplog.text
    assert result.epochs_run == 3
    assert math.isfinite(result.values[0])


def test_seed_makes_runs_reproducible() -> None:
    runs = [run_trial(IRIS, {"seed": s}, NullReporter(), None) for s in (3, 3, 4)]
    assert runs[0].history[-1]["train_loss"] == runs[1].history[-1]["train_loss"]
    assert runs[0].history[-1]["train_loss"] != runs[2].history[-1]["train_loss"]
