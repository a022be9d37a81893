from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from workers.training.augmentation import Augmenter
from workers.training.config import Augment, TrainConfig
from workers.training.data import clear_cache, load_data


def _load(**raw: object):
    return load_data(TrainConfig.from_dict({"dataset": "iris", **raw}))


@pytest.mark.parametrize(
    ("dataset", "model", "task", "shape", "rows"),
    [
        ("digits", "cnn", "classification", (1, 8, 8), 1797),
        ("digits", "mlp", "classification", (64,), 1797),
        ("digits", "lstm", "classification", (8, 8), 1797),
        ("breast_cancer", "mlp", "classification", (30,), 569),
        ("wine", "mlp", "classification", (13,), 178),
        ("iris", "gru", "classification", (4, 1), 150),
        ("diabetes", "mlp", "regression", (10,), 442),
        ("synthetic_classification", "mlp", "classification", (20,), 1000),
        ("synthetic_regression", "mlp", "regression", (20,), 1000),
        ("synthetic_sequence", "rnn", "classification", (16, 20), 1000),
    ],
)
def test_builtin_datasets_load_split_and_lay_out(
    dataset: str, model: str, task: str, shape: tuple[int, ...], rows: int
) -> None:
    data = _load(dataset=dataset, model=model)
    assert data.task == task
    assert data.input_shape == shape
    assert tuple(data.train.x.shape[1:]) == shape
    assert data.test is not None
    assert len(data.train) + len(data.val) + len(data.test) == rows
    assert len(data.val) == pytest.approx(0.2 * rows, abs=2)
    if task == "classification":
        assert data.train.y.dtype == torch.int64
        assert int(data.train.y.max()) + 1 == data.num_classes
    else:
        assert data.train.y.shape == (len(data.train), 1)


def test_split_is_stratified_and_standardized_on_train() -> None:
    data = _load(dataset="wine")
    for split in (data.train, data.val):
        shares = torch.bincount(split.y).float() / len(split)
        full = torch.tensor([59, 71, 48]) / 178
        assert torch.allclose(shares, full, atol=0.03)
    assert data.train.x.mean(0).abs().max() < 1e-4
    assert (data.train.x.std(0) - 1).abs().max() < 0.02
    raw = _load(dataset="wine", standardize=False)
    assert raw.train.x.mean() > 10


def test_cache_returns_the_prepared_data_and_keys_on_options() -> None:
    clear_cache()
    first = _load(dataset="breast_cancer")
    assert _load(dataset="breast_cancer", lr=0.5) is first  # training options do not matter
    assert _load(dataset="breast_cancer", seed=1) is not first


def _write_table(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    if path.suffix == ".csv":
        lines = ["a,b,target"] + [
            ",".join("" if np.isnan(v) else f"{v}" for v in row) + f",{label}"
            for row, label in zip(x, y, strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")
    elif path.suffix == ".npz":
        np.savez(path, x=x, target=y)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "target": y}), path)


@pytest.mark.parametrize("suffix", [".csv", ".npz", ".parquet"])
def test_files_load_with_target_and_imputation(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2))
    y = (x[:, 0] > 0).astype(int)
    x[::10, 1] = np.nan
    path = tmp_path / f"data{suffix}"
    _write_table(path, x, y)
    data = _load(dataset=str(path))
    assert data.task == "classification"
    assert data.num_classes == 2
    assert data.input_shape == (2,)
    assert not torch.isnan(data.train.x).any()
    assert len(data.train) + len(data.val) + len(data.test) == 100  # type: ignore[arg-type]
    dropped = _load(dataset=str(path), impute="drop")
    assert len(dropped.train) + len(dropped.val) + len(dropped.test) == 90  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'impute'"):
        _load(dataset=str(path), impute="none")


def test_impute_median_differs_from_mean(tmp_path: Path) -> None:
    x = np.column_stack([np.arange(40.0), np.r_[np.zeros(30), np.full(9, 100.0), np.nan]])
    y = np.arange(40.0) * 0.5  # regression target
    path = tmp_path / "skewed.csv"
    _write_table(path, x, y)
    mean = _load(dataset=str(path), standardize=False, test_fraction=0.0, val_fraction=0.1)
    median = _load(
        dataset=str(path), standardize=False, test_fraction=0.0, val_fraction=0.1, impute="median"
    )
    assert mean.task == "regression"

    def filled(data) -> float:  # the row whose b was missing has a == 39
        for split in (data.train, data.val):
            hit = split.x[:, 0] == 39
            if hit.any():
                return float(split.x[hit, 1])
        raise AssertionError("row missing")

    assert filled(median) == 0.0
    assert filled(mean) > 10


def test_missing_target_column_names_target(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,label\n1,0\n2,1\n")
    with pytest.raises(ValueError, match="'target'"):
        _load(dataset=str(path))


def test_oversample_and_undersample_balance_train_only() -> None:
    syn = {"samples": 600, "features": 6, "classes": 2, "weights": [0.85, 0.15]}
    plain = _load(dataset="synthetic_classification", synthetic=syn)
    counts = torch.bincount(plain.train.y)
    assert counts[0] > 3 * counts[1]
    over = _load(dataset="synthetic_classification", synthetic=syn, resample="oversample")
    assert torch.bincount(over.train.y).tolist() == [int(counts[0])] * 2
    under = _load(dataset="synthetic_classification", synthetic=syn, resample="undersample")
    assert torch.bincount(under.train.y).tolist() == [int(counts[1])] * 2
    assert torch.equal(over.val.y, plain.val.y)


def test_balanced_class_weights_follow_train_counts() -> None:
    syn = {"samples": 600, "features": 6, "classes": 2, "weights": [0.8, 0.2]}
    data = _load(dataset="synthetic_classification", synthetic=syn, class_weights="balanced")
    counts = torch.bincount(data.train.y).float()
    assert data.class_weights is not None
    expected = len(data.train) / (2 * counts)
    assert torch.allclose(data.class_weights, expected)
    assert data.class_weights[1] > data.class_weights[0]


def test_flip_and_shift_change_images_never_labels() -> None:
    data = _load(dataset="digits", model="cnn")
    x, y = data.train.x[:256], data.train.y[:256].clone()
    torch.manual_seed(0)
    flipped = Augmenter(Augment(flip=True), (1, 8, 8))(x)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all()
    assert mirrored.float().mean().item() == pytest.approx(0.5, abs=0.15)
    shifted = Augmenter(Augment(shift=1), (1, 8, 8))(x)
    assert shifted.shape == x.shape
    assert not torch.equal(shifted, x)
    # interior pixels come from the original image moved by at most one pixel
    for i in range(16):
        moves = [
            torch.equal(shifted[i, :, 1:-1, 1:-1], x[i, :, 1 + dy : 7 + dy, 1 + dx : 7 + dx])
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ]
        assert any(moves)
    noisy = Augmenter(Augment(noise=0.05), (1, 8, 8))(x)
    assert 0.03 < (noisy - x).std().item() < 0.07
    assert torch.equal(data.train.y[:256], y)  # labels and the cached tensors are untouched
    assert torch.equal(data.train.x[:256], x)


def test_flip_needs_images() -> None:
    with pytest.raises(ValueError, match="'augment'"):
        Augmenter(Augment(flip=True), (64,))
