from __future__ import annotations

import pytest

from workers.training.config import TrainConfig, merge


def test_params_override_training_and_dotted_params_set_nested_keys() -> None:
    merged = merge(
        {"dataset": "iris", "lr": 0.1, "early_stopping": {"patience": 5, "min_delta": 0.01}},
        {"lr": 0.01, "early_stopping.patience": 2},
    )
    cfg = TrainConfig.from_dict(merged)
    assert cfg.lr == 0.01
    assert cfg.early_stopping is not None
    assert (cfg.early_stopping.patience, cfg.early_stopping.min_delta) == (2, 0.01)


def test_defaults_and_normalization() -> None:
    cfg = TrainConfig.from_dict(
        {"dataset": "iris", "lr": "1e-3", "hidden": 32, "objective": "f1", "user": {"a": 1}}
    )
    assert cfg.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string
    assert cfg.width == 32
    assert cfg.objective == ("val_f1",)
    assert cfg.objective_direction == "maximize"
    assert cfg.user == {"a": 1}
    loss = TrainConfig.from_dict({"dataset": "iris", "objective": "val_loss"})
    assert loss.objective_direction == "minimize"
    filled = TrainConfig.from_dict({"dataset": "diabetes"}).with_task_defaults("regression")
    assert (filled.objective, filled.loss) == (("val_mse",), "mse")


def test_config_is_frozen() -> None:
    cfg = TrainConfig.from_dict({"dataset": "iris"})
    with pytest.raises(AttributeError):
        cfg.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"dataset": "iris", "learning_rate": 0.1}, "learning_rate"),
        ({}, "dataset"),
        ({"dataset": "mnist"}, "dataset"),
        ({"dataset": "iris", "lr": -1}, "lr"),
        ({"dataset": "iris", "lr": "fast"}, "lr"),
        ({"dataset": "iris", "optimizer": "lbfgs"}, "optimizer"),
        ({"dataset": "iris", "model": "transformer"}, "model"),
        ({"dataset": "iris", "layers": 1.5}, "layers"),
        ({"dataset": "iris", "dropout": 1.0}, "dropout"),
        ({"dataset": "iris", "batch_norm": "maybe"}, "batch_norm"),
        ({"dataset": "iris", "nesterov": True}, "nesterov"),
        ({"dataset": "iris", "schedule": "linear"}, "schedule"),
        ({"dataset": "iris", "precision": "fp8"}, "precision"),
        ({"dataset": "iris", "loss": "hinge"}, "loss"),
        ({"dataset": "iris", "objective": "val_speed"}, "objective"),
        ({"dataset": "iris", "early_stopping": {"patience": 0}}, "early_stopping.patience"),
        ({"dataset": "iris", "early_stopping": {"wait": 3}}, "early_stopping.wait"),
        ({"dataset": "iris", "augment": {"rotate": 10}}, "augment.rotate"),
        ({"dataset": "iris", "freeze": 2}, "freeze"),
        ({"dataset": "iris", "val_fraction": 0.0}, "val_fraction"),
        ({"dataset": "iris", "hidden": 8, "width": 8}, "hidden"),
        ({"dataset": "iris", "model": "rnn", "activation": "gelu"}, "activation"),
        ({"dataset": "iris", "impute": "zero"}, "impute"),
        ({"dataset": "iris", "resample": "smote"}, "resample"),
        ({"dataset": "iris", "user": 3}, "user"),
    ],
)
def test_invalid_config_names_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}'"):
        TrainConfig.from_dict(raw)


def test_task_mismatch_names_the_key() -> None:
    cfg = TrainConfig.from_dict({"dataset": "iris", "objective": "val_r2"})
    with pytest.raises(ValueError, match="'objective'"):
        cfg.with_task_defaults("classification")
    cfg = TrainConfig.from_dict({"dataset": "diabetes", "loss": "cross_entropy"})
    with pytest.raises(ValueError, match="'loss'"):
        cfg.with_task_defaults("regression")
