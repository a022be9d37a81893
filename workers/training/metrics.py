"""Evaluation metrics of one split, from torchmetrics' functional API on the device.

The values are scikit-learn's (tests compare them):

- accuracy: ``accuracy_score``.
- precision, recall, f1: two classes, those of the positive class (class id 1; sklearn's
  ``average="binary"``); more classes, ``average="macro"`` over the classes that occur in the
  targets or the predictions (sklearn's default ``labels``). A zero division gives 0
  (``zero_division=0``): a class that is predicted but absent from the targets scores 0.
- roc_auc: ``roc_auc_score`` (binary; one-vs-rest macro for more classes), exact (no
  thresholds binning). NaN when a class is absent from the targets, where sklearn refuses:
  an average over the classes present would change the metric's meaning silently.
- mse, rmse, mae, r2: ``mean_squared_error`` etc. in the original units of the target; r2 is
  scale-free, so it is computed in the standardized units (torchmetrics' tolerance for a
  constant target is absolute). NaN with fewer than two rows.

The tensors stay on their device: what reaches the host is one flag (is every class in the
targets?) and the final scalars, in one copy. torchmetrics' exact ROC curve has data-dependent
shapes, so on CUDA it syncs internally too; all of it once per split and epoch, never per batch.
Cost on digits (360 validation rows, 10 classes, CPU): ~1.3 ms, ~0.7 ms of it roc_auc.

torchmetrics is imported at the first evaluation, not with this module: it imports scipy
(~0.5-1 s), which a worker's forkserver would otherwise pay before its first slot starts,
also for studies whose user objectives never evaluate here.
"""

from __future__ import annotations

import math

import torch


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
        accuracy, precision, recall, f1, roc_auc; or mse, rmse, mae, r2 (see the module
        docstring for the definitions). A metric that is undefined on this split is NaN.
    """
    outputs = outputs.detach()
    y = y.detach()
    if task == "regression":
        return _regression(outputs, y, target_mean, target_std)
    return _classification(outputs, y.reshape(-1), num_classes)


def _classification(outputs: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, float]:
    from torchmetrics.functional.classification import (
        binary_accuracy,
        binary_auroc,
        binary_f1_score,
        binary_precision,
        binary_recall,
        multiclass_accuracy,
        multiclass_auroc,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    # float64: a confident model saturates float32 probabilities to ties, which blur roc_auc
    logits = outputs.to(torch.float64)
    # sklearn refuses roc_auc when a class is absent; torchmetrics would score it 0 and warn
    all_present = bool(torch.bincount(y, minlength=num_classes).all())  # one scalar read
    if num_classes == 2:
        # bce: one logit; cross entropy: two. Either way the positive class's probability,
        # thresholded at 0.5, is the prediction (argmax for two logits)
        positive = logits[:, 0].sigmoid() if logits.shape[1] == 1 else logits.softmax(1)[:, 1]
        kw = {"validate_args": False}
        values = [
            binary_accuracy(positive, y, **kw),
            binary_precision(positive, y, **kw),
            binary_recall(positive, y, **kw),
            binary_f1_score(positive, y, **kw),
            binary_auroc(positive, y, **kw) if all_present else None,
        ]
    else:
        probs = logits.softmax(1)
        kw = {"num_classes": num_classes, "validate_args": False}
        values = [
            multiclass_accuracy(probs, y, average="micro", **kw),
            multiclass_precision(probs, y, average="macro", **kw),
            multiclass_recall(probs, y, average="macro", **kw),
            multiclass_f1_score(probs, y, average="macro", **kw),
            multiclass_auroc(probs, y, average="macro", **kw) if all_present else None,
        ]
    scores = _to_host(values)
    return dict(zip(("accuracy", "precision", "recall", "f1", "roc_auc"), scores, strict=True))


def _regression(
    outputs: torch.Tensor, y: torch.Tensor, target_mean: float, target_std: float
) -> dict[str, float]:
    from torchmetrics.functional.regression import (
        mean_absolute_error,
        mean_squared_error,
        r2_score,
    )

    standardized_pred = outputs.reshape(-1).to(torch.float64)
    standardized_true = y.reshape(-1).to(torch.float64)
    pred = standardized_pred * target_std + target_mean
    true = standardized_true * target_std + target_mean
    mse, mae, r2 = _to_host(
        [
            mean_squared_error(pred, true),
            mean_absolute_error(pred, true),
            r2_score(standardized_pred, standardized_true) if len(true) > 1 else None,
        ]
    )
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": mae, "r2": r2}


def _to_host(values: list[torch.Tensor | None]) -> list[float]:
    """The scalars in one device-to-host copy; None (undefined) becomes NaN."""
    defined = [v for v in values if v is not None]
    host = iter(torch.stack(defined).to(torch.float64).tolist()) if defined else iter(())
    return [next(host) if v is not None else math.nan for v in values]
