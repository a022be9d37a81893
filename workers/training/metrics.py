"""Evaluation metrics (scikit-learn) from model outputs."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn import metrics as skm


def compute_metrics(
    outputs: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str,
    num_classes: int,
    target_mean: float = 0.0,
    target_std: float = 1.0,
) -> dict[str, float]:
    """Metrics of one split, unprefixed.

    Args:
        outputs: the model's raw outputs: logits (n, classes) or (n, 1) for bce; (n, 1)
            predictions for regression (in standardized units).
        y: class ids, or standardized regression targets (n, 1).
        task: classification or regression.
        num_classes: classes of the task (0 for regression).
        target_mean: mean the regression targets were standardized with.
        target_std: std the regression targets were standardized with.

    Returns:
        accuracy, precision, recall, f1 (macro), roc_auc (scikit-learn's definitions); or
        mse, rmse, mae, r2 (in the
        original units of the target). A metric that is undefined on this split is NaN.
    """
    out = outputs.detach().float().cpu().numpy()
    true = y.detach().cpu().numpy()
    if task == "regression":
        pred = out.reshape(-1) * target_std + target_mean
        true = true.reshape(-1) * target_std + target_mean
        mse = float(skm.mean_squared_error(true, pred))
        return {
            "mse": mse,
            "rmse": math.sqrt(mse),
            "mae": float(skm.mean_absolute_error(true, pred)),
            "r2": float(skm.r2_score(true, pred)) if len(true) > 1 else math.nan,
        }
    true = true.reshape(-1).astype(np.int64)
    if out.shape[1] == 1:  # bce logit
        positive = 1.0 / (1.0 + np.exp(-out[:, 0].astype(np.float64)))
        probs = np.stack([1.0 - positive, positive], axis=1)
    else:
        logits = out.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    # One confusion matrix gives accuracy and the macro scores with sklearn's definitions
    # (zero_division=0); sklearn's own functions cost ~7 ms per call set on a 360-row split,
    # more than a digits epoch, so the per-epoch path computes them here (tests compare).
    confusion = np.bincount(true * num_classes + pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    hits = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(actual > 0, hits / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": float(hits.sum() / max(1, len(true))),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "roc_auc": roc_auc(true, probs, num_classes),
    }


def roc_auc(true: np.ndarray, probs: np.ndarray, num_classes: int) -> float:
    """ROC-AUC as sklearn's roc_auc_score (binary; macro one-vs-rest for more classes).

    Uses the rank (Mann-Whitney U) form with average ranks for ties, which equals the area
    under the ROC curve. NaN when a class is missing from ``true``.
    """
    counts = np.bincount(true, minlength=num_classes)
    if (counts == 0).any():
        return math.nan
    columns = [1] if num_classes == 2 else range(num_classes)
    areas = []
    for c in columns:
        ranks = rankdata(probs[:, c])
        positive = true == c
        n_pos = int(positive.sum())
        n_neg = len(true) - n_pos
        areas.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(areas))
