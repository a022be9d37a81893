"""A user objective for hposvc: ``objective(params, ctx)`` (see user_objective.yaml).

It trains a linear classifier by hand, one pass over the data per epoch, reports the
validation accuracy after each epoch (``ctx.report`` raises TrialPruned when the server prunes;
let it propagate) and checkpoints the model so a trial that lost its worker resumes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def objective(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Train SGDClassifier with ``params`` (alpha, loss, eta0); return val/test accuracy."""
    seed = int(ctx.training.get("seed", 0))
    x, y = load_breast_cancer(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.25, random_state=seed, stratify=y_rest
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_val, x_test = (scaler.transform(a) for a in (x_train, x_val, x_test))

    saved = ctx.load_checkpoint()
    model = (
        saved["model"]
        if saved
        else SGDClassifier(
            loss=params.get("loss", "hinge"),
            alpha=float(params.get("alpha", 1e-4)),
            learning_rate="adaptive",
            eta0=float(params.get("eta0", 0.01)),
            random_state=seed,
        )
    )
    start = saved["epoch"] + 1 if saved else 1
    rng = np.random.default_rng(seed + start)
    val_accuracy = float("nan")
    for epoch in range(start, int(ctx.training.get("epochs", 20)) + 1):
        order = rng.permutation(len(x_train))
        model.partial_fit(x_train[order], y_train[order], classes=np.array([0, 1]))
        val_accuracy = float(model.score(x_val, y_val))
        ctx.report(epoch, val_accuracy)
        if ctx.should_checkpoint:
            ctx.save_checkpoint({"model": model, "epoch": epoch})
    return {"values": [val_accuracy], "test_accuracy": float(model.score(x_test, y_test))}
