"""compute_metrics (torchmetrics) against scikit-learn's definitions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from workers.training.metrics import compute_metrics

CLASSIFICATION_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def _sklearn(true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """sklearn's values; ``probs`` (n, classes); roc_auc NaN where sklearn refuses."""
    pred = probs.argmax(1)
    binary = probs.shape[1] == 2
    average = "binary" if binary else "macro"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            roc = skm.roc_auc_score(true, probs[:, 1] if binary else probs, multi_class="ovr")
    except ValueError:  # a class is absent from true (binary: NaN with a warning)
        roc = math.nan
    return {
        "accuracy": skm.accuracy_score(true, pred),
        "precision": skm.precision_score(true, pred, average=average, zero_division=0),
        "recall": skm.recall_score(true, pred, average=average, zero_division=0),
        "f1": skm.f1_score(true, pred, average=average, zero_division=0),
        "roc_auc": roc,
    }


def _check(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no per-epoch warning spam, even in degenerate cases
        ours = compute_metrics(logits, y, task="classification", num_classes=num_classes)
    assert set(ours) == set(CLASSIFICATION_KEYS)
    wide = logits.to(torch.float64)
    if wide.shape[1] == 1:  # bce: one logit of the positive class
        positive = wide[:, 0].sigmoid()
        probs = torch.stack([1 - positive, positive], 1)
    else:
        probs = wide.softmax(1)
    expected = _sklearn(y.numpy(), probs.numpy())
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-6, nan_ok=True)
    return ours


def _data(n: int, classes: int, seed: int, outputs: int | None = None) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    logits = torch.randn(n, outputs or classes, generator=g)
    if outputs != 1:
        logits[torch.arange(n), y] += 1.0  # better than chance, not perfect
    return logits, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_sklearn(seed: int) -> None:
    logits, y = _data(360, 10, seed)
    _check(logits, y, 10)


def test_binary_matches_sklearn_for_bce_and_cross_entropy() -> None:
    logits, y = _data(200, 2, 3)
    ours = _check(logits, y, 2)  # two logits (cross entropy)
    bce = logits[:, 1:] - logits[:, :1]  # the same model as one logit
    assert _check(bce, y, 2) == pytest.approx(ours)
    assert _check(torch.randn(200, 1), y, 2)["precision"] >= 0  # bce, unrelated logits


def test_roc_auc_handles_ties_as_sklearn() -> None:
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    logits = torch.tensor([[1.0, 0.0, 0.0]] * 5 + [[0.0, 1.0, 0.0]] * 5)  # heavy ties
    _check(logits, y, 3)


def test_saturated_probabilities_keep_their_order() -> None:
    """float32 softmax would tie these at 1.0; roc_auc is computed in float64."""
    y = torch.tensor([0, 1, 0, 1])
    logits = torch.tensor([[0.0, 20.0], [0.0, 30.0], [0.0, -1.0], [0.0, 40.0]])
    assert _check(logits, y, 2)["roc_auc"] == 1.0


def test_a_class_missing_from_the_targets() -> None:
    """Macro scores skip classes absent from targets and predictions (sklearn's labels);
    roc_auc is NaN where sklearn refuses to compute it."""
    logits, y = _data(300, 10, 4)
    y[y == 7] = 3  # class 7 absent from the targets, still predicted now and then
    ours = _check(logits, y, 10)
    assert math.isnan(ours["roc_auc"])
    logits[:, 7] = -10.0  # and never predicted: left out of the macro averages
    ours = _check(logits, y, 10)
    assert ours["recall"] > 0 and math.isnan(ours["roc_auc"])


def test_binary_with_one_class_in_the_targets() -> None:
    logits, _ = _data(50, 2, 5)
    ours = _check(logits, torch.ones(50, dtype=torch.long), 2)
    assert math.isnan(ours["roc_auc"])
    assert ours["precision"] == 1.0 and ours["recall"] == pytest.approx(ours["accuracy"])
    ours = _check(logits, torch.zeros(50, dtype=torch.long), 2)
    assert ours["recall"] == 0.0 and ours["f1"] == 0.0  # zero_division=0


def test_low_precision_outputs_are_accepted() -> None:
    logits, y = _data(100, 4, 6)
    half = compute_metrics(logits.bfloat16(), y, task="classification", num_classes=4)
    full = compute_metrics(logits.bfloat16().float(), y, task="classification", num_classes=4)
    assert half == pytest.approx(full)


@pytest.mark.parametrize(("mean", "std"), [(150.0, 77.0), (0.002, 0.001)])
def test_regression_matches_sklearn_in_target_units(mean: float, std: float) -> None:
    g = torch.Generator().manual_seed(7)
    y = torch.randn(120, 1, generator=g)
    outputs = 0.8 * y + 0.3 * torch.randn(120, 1, generator=g)
    ours = compute_metrics(
        outputs, y, task="regression", num_classes=0, target_mean=mean, target_std=std
    )
    true = y.double().numpy().ravel() * std + mean
    pred = outputs.double().numpy().ravel() * std + mean
    expected = {
        "mse": skm.mean_squared_error(true, pred),
        "rmse": skm.root_mean_squared_error(true, pred),
        "mae": skm.mean_absolute_error(true, pred),
        "r2": skm.r2_score(true, pred),
    }
    assert ours == pytest.approx(expected, rel=1e-5)


def test_regression_r2_is_nan_on_one_row() -> None:
    ours = compute_metrics(
        torch.tensor([[0.5]]), torch.tensor([[0.0]]), task="regression", num_classes=0
    )
    assert ours["mse"] == pytest.approx(0.25) and math.isnan(ours["r2"])
