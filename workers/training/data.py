"""Datasets: load, clean, split, standardize and rebalance, then keep them on the device.

Every split lives on the device as one tensor pair; the loop takes batches as index slices.
The prepared data is cached per process, keyed by the data options, so the next trial in the
same process (same data settings) does not load it again. Cached tensors are never modified.

scikit-learn (its datasets and splitting) is imported when data is first prepared, not with
this module: it costs ~0.8 s of import that a worker's forkserver would otherwise pay before
its first slot starts, also for studies whose user objectives never load data here.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from workers.training.config import TrainConfig

logger = logging.getLogger(__name__)

_CACHE: OrderedDict[tuple[Any, ...], PreparedData] = OrderedDict()
_CACHE_SIZE = 4
_MAX_CLASSES_FOR_INFERENCE = 50


@dataclass(frozen=True)
class Split:
    """One split on the device: inputs ``x`` and targets ``y`` (class ids or floats (n, 1))."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class PreparedData:
    """The three splits plus what the model, loss and metrics need to know."""

    train: Split
    val: Split
    test: Split | None
    task: str  # classification | regression
    num_classes: int  # 0 for regression
    input_shape: tuple[int, ...]  # one sample, after the layout for the model
    class_weights: torch.Tensor | None  # per class, from the train counts
    target_mean: float  # regression targets were standardized with these
    target_std: float


@dataclass(frozen=True)
class _Raw:
    x: np.ndarray  # (n, *sample_shape) float
    y: np.ndarray  # (n,)
    task: str


def clear_cache() -> None:
    """Forget every prepared dataset of this process."""
    _CACHE.clear()


def load_data(cfg: TrainConfig, device: str | torch.device = "cpu") -> PreparedData:
    """Return the prepared splits for ``cfg`` on ``device``, from the cache when possible.

    Raises:
        ValueError: the data options do not fit the data (the message names the key).
    """
    key = _cache_key(cfg, str(device))
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        logger.debug("dataset %s from the process cache", cfg.dataset)
        return cached
    data = _prepare(cfg, torch.device(device))
    _CACHE[key] = data
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return data


def _layout_kind(model: str) -> str:
    if model == "mlp":
        return "flat"
    if model == "cnn":
        return "image"
    if model in ("rnn", "lstm", "gru"):
        return "sequence"
    return "native"


def _cache_key(cfg: TrainConfig, device: str) -> tuple[Any, ...]:
    source: Any = cfg.dataset
    path = Path(cfg.dataset)
    if path.suffix.lower() in (".csv", ".npz", ".parquet") and path.exists():
        stat = path.stat()  # a rewritten file is loaded again
        source = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    return (
        source,
        cfg.target,
        cfg.task,
        cfg.impute,
        cfg.standardize,
        cfg.val_fraction,
        cfg.test_fraction,
        cfg.seed,
        cfg.synthetic if cfg.dataset.startswith("synthetic") else None,
        cfg.resample,
        cfg.class_weights,
        _layout_kind(cfg.model),
        device,
    )


def _prepare(cfg: TrainConfig, device: torch.device) -> PreparedData:
    raw = _load_raw(cfg)
    x, y, task = raw.x.astype(np.float32, copy=False), raw.y, raw.task
    logger.info("dataset %s: %d rows, sample shape %s, %s", cfg.dataset, len(x), x.shape[1:], task)

    x, y = _drop_missing(cfg, x, y)
    num_classes = 0
    if task == "classification":
        classes, y = np.unique(y, return_inverse=True)
        num_classes = len(classes)
        if num_classes < 2:
            raise ValueError(f"training config key 'dataset': {cfg.dataset} has only one class")
        y = y.astype(np.int64)
    else:
        y = y.astype(np.float32)

    train_idx, val_idx, test_idx = _split_indices(cfg, y, task)
    x = _impute(cfg, x, train_idx)

    target_mean, target_std = 0.0, 1.0
    if cfg.standardize:
        x = _standardize(x, train_idx)
        if task == "regression":
            target_mean = float(y[train_idx].mean())
            target_std = float(y[train_idx].std()) or 1.0
            y = (y - target_mean) / target_std

    if task == "classification" and cfg.resample != "none":
        train_idx = _resample(cfg, y, train_idx)

    x = _apply_layout(cfg, x)
    class_weights = None
    if task == "classification" and cfg.class_weights == "balanced":
        counts = np.bincount(y[train_idx], minlength=num_classes).astype(np.float64)
        weights = len(train_idx) / (num_classes * np.maximum(counts, 1.0))
        class_weights = torch.tensor(weights, dtype=torch.float32, device=device)

    def to_split(idx: np.ndarray) -> Split:
        xt = torch.from_numpy(np.ascontiguousarray(x[idx])).to(device)
        yt = torch.from_numpy(np.ascontiguousarray(y[idx])).to(device)
        if task == "regression":
            yt = yt.reshape(-1, 1)
        return Split(xt, yt)

    return PreparedData(
        train=to_split(train_idx),
        val=to_split(val_idx),
        test=to_split(test_idx) if len(test_idx) else None,
        task=task,
        num_classes=num_classes,
        input_shape=tuple(x.shape[1:]),
        class_weights=class_weights,
        target_mean=target_mean,
        target_std=target_std,
    )


# -- sources -----------------------------------------------------------------------------------


def _load_raw(cfg: TrainConfig) -> _Raw:
    from sklearn import datasets as skdatasets

    name = cfg.dataset
    if name == "digits":
        bunch = skdatasets.load_digits()
        images = bunch.images.astype(np.float32)[:, None] / 16.0  # (n, 1, 8, 8)
        return _Raw(images, bunch.target, _task(cfg, "classification"))
    loaders = {
        "breast_cancer": (skdatasets.load_breast_cancer, "classification"),
        "wine": (skdatasets.load_wine, "classification"),
        "iris": (skdatasets.load_iris, "classification"),
        "diabetes": (skdatasets.load_diabetes, "regression"),
    }
    if name in loaders:
        loader, task = loaders[name]
        bunch = loader()
        return _Raw(bunch.data, bunch.target, _task(cfg, task))
    if name.startswith("synthetic_"):
        return _synthetic(cfg)
    return _load_file(cfg)


def _task(cfg: TrainConfig, natural: str) -> str:
    if cfg.task is not None and cfg.task != natural:
        raise ValueError(f"training config key 'task': {cfg.dataset} is a {natural} dataset")
    return natural


def _synthetic(cfg: TrainConfig) -> _Raw:
    from sklearn import datasets as skdatasets

    syn = cfg.synthetic
    if cfg.dataset == "synthetic_regression":
        x, y = skdatasets.make_regression(
            n_samples=syn.samples,
            n_features=syn.features,
            n_informative=max(1, syn.features // 2),
            noise=syn.noise * 10.0,
            random_state=cfg.seed,
        )
        return _Raw(x, y, _task(cfg, "regression"))
    weights = list(syn.weights) if syn.weights else None
    if weights is not None and len(weights) != syn.classes:
        raise ValueError("training config key 'synthetic.weights': needs one weight per class")
    if cfg.dataset == "synthetic_classification":
        informative = max(2, min(syn.features, max(syn.classes, syn.features // 2)))
        if 2**informative < 2 * syn.classes:
            raise ValueError("training config key 'synthetic.features': too few for the classes")
        x, y = skdatasets.make_classification(
            n_samples=syn.samples,
            n_features=syn.features,
            n_informative=informative,
            n_redundant=0,
            n_classes=syn.classes,
            weights=weights,
            flip_y=min(syn.noise, 0.5),
            random_state=cfg.seed,
        )
        return _Raw(x, y, _task(cfg, "classification"))
    # synthetic_sequence: class c is a sine of frequency c + 1 over time, in noisy features.
    rng = np.random.default_rng(cfg.seed)
    probs = np.asarray(weights) / np.sum(weights) if weights else None
    y = rng.choice(syn.classes, size=syn.samples, p=probs)
    t = np.arange(syn.seq_len, dtype=np.float32) / syn.seq_len
    phase = rng.uniform(0, 2 * math.pi, size=(syn.samples, 1))
    signal = np.sin(2 * math.pi * (y[:, None] + 1) * t[None, :] + phase)  # (n, T)
    mix = rng.normal(size=(1, 1, syn.features))
    x = signal[:, :, None] * mix + syn.noise * rng.normal(
        size=(syn.samples, syn.seq_len, syn.features)
    )
    return _Raw(x, y, _task(cfg, "classification"))


def _load_file(cfg: TrainConfig) -> _Raw:
    path = Path(cfg.dataset)
    if not path.is_file():
        raise ValueError(f"training config key 'dataset': no file {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            arrays = dict(npz.items())
        if cfg.target not in arrays:
            raise ValueError(f"training config key 'target': no array {cfg.target!r} in {path}")
        y = arrays.pop(cfg.target)
        feature_key = next((k for k in ("x", "X", "features", "data") if k in arrays), None)
        if feature_key is None and len(arrays) == 1:
            feature_key = next(iter(arrays))
        if feature_key is None:
            raise ValueError(
                f"training config key 'dataset': {path} needs an array named x besides "
                f"{cfg.target!r}, has {sorted(arrays)}"
            )
        x = arrays[feature_key]
        if x.ndim == 1:
            x = x[:, None]
        columns = {"x": x}
    elif suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if len(rows) < 2:
            raise ValueError(f"training config key 'dataset': {path} has no data rows")
        header, body = rows[0], rows[1:]
        columns = {
            name: np.array([r[i] for r in body], dtype=object) for i, name in enumerate(header)
        }
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:  # optional dependency
            raise ValueError(
                "training config key 'dataset': reading Parquet needs the pyarrow package"
            ) from None
        table = pq.read_table(path)
        columns = {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
        }

    if suffix != ".npz":
        if cfg.target not in columns:
            raise ValueError(
                f"training config key 'target': no column {cfg.target!r} in {path} "
                f"(columns: {', '.join(columns)})"
            )
        y = columns.pop(cfg.target)
        x = np.stack([_numeric_column(name, col) for name, col in columns.items()], axis=1)
    y_numeric = _try_numeric(y)
    task = cfg.task or _infer_task(y_numeric)
    if task == "regression":
        if y_numeric is None:
            raise ValueError(f"training config key 'task': target {cfg.target!r} is not numeric")
        y = y_numeric
    else:
        y = y_numeric if y_numeric is not None else np.asarray(y, dtype=str)
        if y.dtype.kind == "f":
            keep = ~np.isnan(y)
            x, y = x[keep], y[keep]
    return _Raw(np.asarray(x, dtype=np.float32), y, task)


def _try_numeric(values: np.ndarray) -> np.ndarray | None:
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    try:
        return np.array([np.nan if v in ("", None) else float(v) for v in values])
    except (TypeError, ValueError):
        return None


def _numeric_column(name: str, values: np.ndarray) -> np.ndarray:
    numeric = _try_numeric(values)
    if numeric is None:
        raise ValueError(
            f"training config key 'dataset': column {name!r} is not numeric "
            "(encode it before training)"
        )
    return numeric


def _infer_task(y: np.ndarray | None) -> str:
    if y is None:
        return "classification"
    finite = y[~np.isnan(y)]
    integral = np.all(np.equal(np.mod(finite, 1), 0))
    few = len(np.unique(finite)) <= min(_MAX_CLASSES_FOR_INFERENCE, max(2, len(finite) // 5))
    return "classification" if integral and few else "regression"


# -- cleaning, split, scaling, rebalancing -----------------------------------------------------


def _drop_missing(cfg: TrainConfig, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if y.dtype.kind == "f":
        keep = ~np.isnan(y)
        if not keep.all():
            logger.info("dropping %d rows without a target", int((~keep).sum()))
            x, y = x[keep], y[keep]
    missing = np.isnan(x.reshape(len(x), -1)).any(axis=1)
    if not missing.any():
        return x, y
    if cfg.impute == "none":
        raise ValueError(
            f"training config key 'impute': {cfg.dataset} has {int(missing.sum())} rows with "
            "missing values; set impute to mean, median or drop"
        )
    if cfg.impute == "drop":
        logger.info("dropping %d rows with missing values", int(missing.sum()))
        return x[~missing], y[~missing]
    return x, y


def _impute(cfg: TrainConfig, x: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    mask = np.isnan(flat)
    if not mask.any():
        return x
    reduce = np.nanmedian if cfg.impute == "median" else np.nanmean
    with np.errstate(all="ignore"):
        fill = reduce(flat[train_idx], axis=0)
    fill = np.where(np.isnan(fill), 0.0, fill).astype(np.float32)
    flat = np.where(mask, fill[None, :], flat)
    logger.info("imputed %d missing values with the train %s", int(mask.sum()), cfg.impute)
    return flat.reshape(x.shape)


def _split_indices(
    cfg: TrainConfig, y: np.ndarray, task: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))

    def split(ids: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        labels = y[ids] if task == "classification" else None
        try:
            a, b = train_test_split(
                ids, test_size=fraction, random_state=cfg.seed, stratify=labels
            )
        except ValueError:  # a class too small to stratify
            a, b = train_test_split(ids, test_size=fraction, random_state=cfg.seed)
        return np.sort(a), np.sort(b)

    test_idx = np.empty(0, dtype=np.int64)
    if cfg.test_fraction > 0:
        idx, test_idx = split(idx, cfg.test_fraction)
    train_idx, val_idx = split(idx, cfg.val_fraction / (1.0 - cfg.test_fraction))
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise ValueError("training config key 'val_fraction': leaves an empty split")
    return train_idx, val_idx, test_idx


def _standardize(x: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
    train = x[train_idx]
    if x.ndim == 4:  # images: one scalar, keeps the pixel structure
        axes: tuple[int, ...] = (0, 1, 2, 3)
    elif x.ndim == 3:  # sequences: per feature over time
        axes = (0, 1)
    else:
        axes = (0,)
    mean = train.mean(axis=axes, keepdims=True)
    std = train.std(axis=axes, keepdims=True)
    std = np.where(std < 1e-8, 1.0, std)
    return ((x - mean) / std).astype(np.float32)


def _resample(cfg: TrainConfig, y: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(cfg.seed)
    labels = y[train_idx]
    classes, counts = np.unique(labels, return_counts=True)
    target = counts.max() if cfg.resample == "oversample" else counts.min()
    parts = []
    for cls, count in zip(classes, counts, strict=True):
        members = train_idx[labels == cls]
        if count == target:
            parts.append(members)
        elif cfg.resample == "oversample":
            extra = rng.choice(members, size=target - count, replace=True)
            parts.append(np.concatenate([members, extra]))
        else:
            parts.append(rng.choice(members, size=target, replace=False))
    out = np.sort(np.concatenate(parts))
    logger.info("%s: train split %d -> %d rows", cfg.resample, len(train_idx), len(out))
    return out


def _apply_layout(cfg: TrainConfig, x: np.ndarray) -> np.ndarray:
    """Reshape samples for the model family: flat (MLP), CHW (CNN), time x features (RNN)."""
    kind = _layout_kind(cfg.model)
    n = len(x)
    if kind == "flat":
        return x.reshape(n, -1)
    if kind == "image":
        if x.ndim == 4:
            return x
        if x.ndim == 3:
            return x[:, None]
        raise ValueError(
            f"training config key 'model': cnn needs image or 2-D samples; {cfg.dataset} has "
            f"flat samples of {x.shape[1]} features (use mlp)"
        )
    if kind == "sequence":
        if x.ndim == 3:
            return x
        if x.ndim == 2:
            return x[:, :, None]  # each feature one time step
        c, h, w = x.shape[1:]
        return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(n, h, c * w)  # rows
    return x
