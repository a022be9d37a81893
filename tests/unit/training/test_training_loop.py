from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from training_helpers import DIGITS_CNN, IRIS, ScriptedReporter, train

from workers.training.checkpoint import FileCheckpointStore, InMemoryCheckpointStore, from_bytes
from workers.training.early_stopping import EarlyStopping
from workers.training.loop import TrainingDiverged
from workers.training.pruning import NullReporter
from workers.training.runner import run_trial


def test_early_stopping_rule() -> None:
    stopper = EarlyStopping("val_loss", "minimize", patience=2, min_delta=0.1)
    assert stopper.update(1.0, 1) == (False, "")
    assert stopper.update(0.95, 2)[0] is False  # not better by min_delta
    stop, reason = stopper.update(0.92, 3)
    assert stop and "2 epochs" in reason and "epoch 1" in reason
    up = EarlyStopping("val_accuracy", "maximize", patience=1)
    up.update(0.5, 1)
    assert up.update(0.6, 2) == (False, "") and up.best == 0.6 and up.best_epoch == 2
    assert up.update(float("nan"), 3)[0] is True
    tracker = EarlyStopping("val_accuracy", "maximize")
    assert not any(tracker.update(0.1, e)[0] for e in range(1, 50))


def test_early_stopping_fires_on_a_plateau() -> None:
    result = train(lr=1e-9, max_epochs=20, early_stopping={"patience": 3, "min_delta": 0.001})
    assert result.stopped == "early_stopped"
    assert result.stop_epoch == result.epochs_run == 4  # epoch 1 sets the best, 3 flat epochs
    assert "did not improve" in result.stop_reason
    assert len(result.history) == 4


def test_pruning_stops_at_the_epoch_the_reporter_says() -> None:
    reporter = ScriptedReporter(prune_at=3)
    result = run_trial(IRIS, {"max_epochs": 10}, reporter, None)
    assert result.stopped == "pruned"
    assert result.epochs_run == result.stop_epoch == 3
    assert [step for step, _ in reporter.reports] == [1, 2, 3]
    assert [v for _, v in reporter.reports] == [h["val_accuracy"] for h in result.history]
    assert not any(k.startswith("test_") for k in result.metrics)


def test_result_has_prefixed_metrics_history_and_a_loadable_model() -> None:
    result = train(objective=["val_accuracy", "val_loss"])
    assert set(result.metrics) >= {
        "val_accuracy",
        "val_f1",
        "val_roc_auc",
        "val_precision",
        "val_recall",
        "val_loss",
        "test_accuracy",
        "test_loss",
    }
    assert result.values == [result.metrics["val_accuracy"], result.metrics["val_loss"]]
    assert result.stopped == "completed" and result.stop_reason == "reached max_epochs=3"
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[0]["samples_per_second"] > 0
    assert result.resumed_from_epoch is None
    state = torch.load(io.BytesIO(result.model_state), weights_only=True)  # type: ignore[arg-type]
    assert "head.weight" in state


def test_restore_best_reports_the_best_epoch() -> None:
    result = train(max_epochs=8, lr=0.05, objective="val_loss")
    best = min(result.history, key=lambda h: h["val_loss"])
    assert result.values == [best["val_loss"]]
    last = train(max_epochs=8, lr=0.05, objective="val_loss", restore_best=False)
    assert last.values == [last.history[-1]["val_loss"]]


def test_regression_metrics_are_in_target_units() -> None:
    result = train({"dataset": "diabetes", "max_epochs": 30, "lr": 0.01, "width": 32})
    assert result.metrics["val_mse"] > 500  # diabetes targets are in the hundreds
    assert result.metrics["test_r2"] > 0.3
    assert result.metrics["val_rmse"] ** 2 == pytest.approx(result.metrics["val_mse"])


def test_checkpoint_resume_continues_from_the_saved_epoch() -> None:
    config = {**DIGITS_CNN, "max_epochs": 5, "checkpoint_every_seconds": 0}  # every epoch
    store = InMemoryCheckpointStore()
    with pytest.raises(ConnectionError):  # the worker is lost while reporting epoch 4
        run_trial(config, {}, ScriptedReporter(crash_at=4), store)
    assert from_bytes(store.state)["epoch"] == 3  # type: ignore[arg-type]
    reporter = ScriptedReporter()
    resumed = run_trial(config, {}, reporter, store)
    assert resumed.resumed_from_epoch == 3
    assert [step for step, _ in reporter.reports] == [4, 5]  # the epoch counter continued
    assert resumed.epochs_run == 5 and [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]
    straight = run_trial(config, {}, NullReporter(), None)
    assert straight.epochs_run == resumed.epochs_run
    assert resumed.history[-1]["val_loss"] == pytest.approx(straight.history[-1]["val_loss"])
    assert resumed.metrics == pytest.approx(straight.metrics)


def test_file_store_resumes_and_a_finished_run_does_not_train_again(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path / "trial-7" / "ckpt.pt")
    assert store.load() is None
    config = {
        **IRIS,
        "lr": 1e-9,
        "max_epochs": 10,
        "early_stopping": {"patience": 2},
        "checkpoint_every_seconds": 0,
    }
    first = run_trial(config, {}, NullReporter(), store)
    assert first.stopped == "early_stopped" and first.stop_epoch == 3
    reporter = ScriptedReporter()
    again = run_trial(config, {}, reporter, store)
    assert reporter.reports == []
    assert (again.stopped, again.stop_epoch, again.resumed_from_epoch) == ("early_stopped", 3, 3)
    assert again.values == first.values


def test_nan_loss_raises_training_diverged() -> None:
    with pytest.raises(TrainingDiverged, match="nan"):
        train(model="training_user_code:NaNNet", max_epochs=5)


def test_exploding_loss_raises_training_diverged() -> None:
    with pytest.raises(TrainingDiverged):
        train(
            {"dataset": "diabetes", "max_epochs": 20}, optimizer="sgd", lr=1e6, standardize=False
        )


def test_augmentation_and_imbalance_options_run_in_training() -> None:
    plain = train(DIGITS_CNN)
    augmented = train(DIGITS_CNN, augment={"shift": 1, "noise": 0.05})
    assert augmented.history[0]["train_loss"] != plain.history[0]["train_loss"]
    with pytest.raises(ValueError, match="'augment'"):
        train(IRIS, augment={"flip": True})
    syn = {"samples": 400, "features": 6, "classes": 2, "weights": [0.85, 0.15]}
    base = {**IRIS, "dataset": "synthetic_classification", "synthetic": syn}
    unweighted = train(base, loss="bce", objective="val_recall")
    for extra in ({"class_weights": "balanced"}, {"resample": "oversample"}):
        for loss in ("bce", "cross_entropy"):
            result = train(base, loss=loss, objective="val_recall", **extra)
            assert result.history[0]["train_loss"] != unweighted.history[0]["train_loss"]
