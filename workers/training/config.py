"""TrainConfig: the validated settings of one trial of the built-in training loop.

The effective config of a trial is ``{**training, **params}``: the study's ``training`` section
with the trial's hyperparameters on top, so any key below can be searched over. A param whose
name holds a dot sets one key of a nested section (``early_stopping.patience: 3``). Unknown keys
are an error, except ``user`` (a dict passed through untouched). Trials that run a user function
(``entrypoint``) are not validated here, see ``entrypoint.py``.

Data (``data.py``)
    dataset         digits | breast_cancer | wine | iris | diabetes | synthetic_classification |
                    synthetic_regression | synthetic_sequence | a file ``*.csv|*.npz|*.parquet``
    target          column (CSV/Parquet) or array (NPZ) holding the labels; default ``target``
    task            classification | regression; inferred from the dataset when left out
    impute          mean | median | drop | none: missing values (fitted on train); default mean
    standardize     zero mean, unit variance (fitted on train; regression targets too); true
    val_fraction    share of rows for validation, stratified for classification; 0.2
    test_fraction   share of rows for the test set (0 = none); 0.2
    seed            seeds the split, torch, numpy and random; 0
    synthetic       {samples: 1000, features: 20, classes: 2, seq_len: 16, noise: 0.1,
                    weights: [0.9, 0.1]} for the synthetic_* datasets
    augment         {flip: false, shift: 0, noise: 0.0}: image augmentation on the device (flip
                    needs a CNN; shift = max pixels; noise = std of added Gaussian noise)
    class_weights   none | balanced: loss weights from the train class counts
    resample        none | oversample | undersample: rebalance the train split

Model (``models.py``)
    model           mlp | cnn | rnn | lstm | gru | ``package.module:Class``, built as
                    ``Class(input_shape, output_dim, **model_options)``; default mlp
    model_options   dict of keyword arguments for a user model
    layers          hidden layers (MLP, CNN conv blocks, stacked RNN layers); 2
    width           hidden units (alias ``hidden``); 64
    channels        channels of the first CNN block, doubled after each pooling; 16
    activation      relu | gelu | tanh | sigmoid; relu (tanh for rnn, which takes relu|tanh)
    dropout         dropout probability; 0.0
    batch_norm      batch normalization after each hidden layer; false
    init            default | xavier | kaiming | orthogonal weight initialization

Optimization (``optim.py``, ``losses.py``)
    optimizer       sgd | adam | adamw | rmsprop; adam
    lr              learning rate; 1e-3
    momentum        momentum of sgd and rmsprop; 0.0
    nesterov        Nesterov momentum for sgd (needs momentum > 0); false
    weight_decay    L2 penalty (decoupled for adamw); 0.0
    l1              L1 penalty on all weights added to the loss; 0.0
    schedule        none | step | cosine | onecycle (LR per batch); none
    warmup_epochs   linear warmup epochs (step, cosine, none; onecycle's rising phase); 0
    step_size       epochs between decays of the step schedule; 10
    gamma           decay factor of the step schedule; 0.1
    grad_clip       max gradient norm; none
    precision       fp32 | bf16 | fp16: autocast on CUDA only, CPU stays fp32; fp32
    batch_size      64
    max_epochs      20
    loss            cross_entropy | bce | mse | mae | huber; cross_entropy or mse by task
    label_smoothing for cross_entropy; 0.0

Evaluation (``metrics.py``, ``early_stopping.py``)
    objective       a validation metric or a list of them (the first is reported, drives early
                    stopping and picks the best epoch): accuracy, precision, recall, f1, roc_auc,
                    loss (classification); mse, rmse, mae, r2, loss (regression). ``val_`` prefix
                    optional. Default val_accuracy or val_mse
    direction       maximize | minimize; inferred from the objective
    early_stopping  {patience: 5, min_delta: 0.0} on the objective; none = off; true = defaults
    restore_best    end on the weights of the best epoch (test metrics use them); true

Checkpoints (``checkpoint.py``)
    checkpoint_every_seconds
                    seconds between a trial's checkpoints, taken at the end of an epoch (the
                    worker uploads them in the background); 0 = after every epoch. A stopping
                    worker checkpoints at the end of the current epoch anyway; a lost worker's
                    retry repeats at most this much training (plus an epoch). 30

Transfer learning
    init_checkpoint file with a state_dict or a full checkpoint, loaded before training (tensors
                    whose name and shape match)
    freeze          list of parameter-name prefixes, or N = the first N weight layers

Other
    entrypoint      ``package.module:function`` or ``path/file.py:function`` (user objective)
    user            free dict, passed through untouched
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DATASETS = (
    "digits",
    "breast_cancer",
    "wine",
    "iris",
    "diabetes",
    "synthetic_classification",
    "synthetic_regression",
    "synthetic_sequence",
)
FILE_SUFFIXES = (".csv", ".npz", ".parquet")
MODELS = ("mlp", "cnn", "rnn", "lstm", "gru")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid")
INITS = ("default", "xavier", "kaiming", "orthogonal")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "cosine", "onecycle")
PRECISIONS = ("fp32", "bf16", "fp16")
LOSSES = ("cross_entropy", "bce", "mse", "mae", "huber")
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "loss")
REGRESSION_METRICS = ("mse", "rmse", "mae", "r2", "loss")
MINIMIZED_METRICS = ("loss", "mse", "rmse", "mae")


def merge(training: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{**training, **params}``; a dotted param name sets one key of a nested dict."""
    merged = dict(training)
    for key, value in params.items():
        if "." in key:
            section, sub = key.split(".", 1)
            base = merged.get(section)
            merged[section] = {**(base if isinstance(base, Mapping) else {}), sub: value}
        else:
            merged[key] = value
    return merged


def _fail(key: str, message: str) -> ValueError:
    return ValueError(f"training config key {key!r}: {message}")


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    raise _fail(key, f"expected true or false, got {value!r}")


def _int(key: str, value: Any, low: int | None = None) -> int:
    if isinstance(value, bool):
        raise _fail(key, f"expected an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise _fail(key, f"expected an integer, got {value!r}") from None
    if not isinstance(value, int):
        raise _fail(key, f"expected an integer, got {value!r}")
    if low is not None and value < low:
        raise _fail(key, f"must be >= {low}, got {value}")
    return value


def _float(
    key: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    # YAML 1.1 reads "1e-3" (no dot) as a string: accept numeric strings.
    if isinstance(value, bool):
        raise _fail(key, f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(key, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise _fail(key, f"must be finite, got {value!r}")
    if low is not None and (number < low or (low_open and number == low)):
        raise _fail(key, f"must be {'>' if low_open else '>='} {low}, got {number}")
    if high is not None and (number > high or (high_open and number == high)):
        raise _fail(key, f"must be {'<' if high_open else '<='} {high}, got {number}")
    return number


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise _fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
    return value.lower()


def _optional_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    """Like _choice, with None/False read as "none" (YAML ``none`` is a string, ``null`` None)."""
    if value is None or value is False:
        return "none"
    return _choice(key, value, ("none", *choices))


def _section(key: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(key, f"expected a mapping, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(f"{key}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
    return dict(value)


def _is_import_path(value: str) -> bool:
    module, sep, attr = value.partition(":")
    return bool(sep and module and attr.isidentifier())


@dataclass(frozen=True)
class Synthetic:
    """Size and shape of the synthetic_* datasets."""

    samples: int = 1000
    features: int = 20
    classes: int = 2
    seq_len: int = 16
    noise: float = 0.1
    weights: tuple[float, ...] | None = None

    @classmethod
    def from_value(cls, value: Any) -> Synthetic:
        raw = _section("synthetic", value, {f.name for f in dataclasses.fields(cls)})
        out = cls()
        kwargs: dict[str, Any] = {}
        for name in ("samples", "features", "classes", "seq_len"):
            if name in raw:
                kwargs[name] = _int(f"synthetic.{name}", raw[name], 2)
        if "noise" in raw:
            kwargs["noise"] = _float("synthetic.noise", raw["noise"], 0.0)
        if raw.get("weights") is not None:
            weights = raw["weights"]
            if not isinstance(weights, list | tuple) or not weights:
                raise _fail("synthetic.weights", f"expected a list of numbers, got {weights!r}")
            kwargs["weights"] = tuple(
                _float("synthetic.weights", w, 0.0, low_open=True) for w in weights
            )
        return dataclasses.replace(out, **kwargs)


@dataclass(frozen=True)
class Augment:
    """On-device augmentation of image batches."""

    flip: bool = False
    shift: int = 0
    noise: float = 0.0

    @classmethod
    def from_value(cls, value: Any) -> Augment | None:
        if value is None or value is False:
            return None
        raw = _section("augment", value, {"flip", "shift", "noise"})
        aug = cls(
            flip=_bool("augment.flip", raw.get("flip", False)),
            shift=_int("augment.shift", raw.get("shift", 0), 0),
            noise=_float("augment.noise", raw.get("noise", 0.0), 0.0),
        )
        return aug if (aug.flip or aug.shift or aug.noise) else None


@dataclass(frozen=True)
class EarlyStop:
    """Early stopping settings."""

    patience: int = 5
    min_delta: float = 0.0

    @classmethod
    def from_value(cls, value: Any) -> EarlyStop | None:
        if value is None or value is False:
            return None
        raw = _section("early_stopping", value, {"patience", "min_delta"})
        return cls(
            patience=_int("early_stopping.patience", raw.get("patience", 5), 1),
            min_delta=_float("early_stopping.min_delta", raw.get("min_delta", 0.0), 0.0),
        )


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one trial; see the module docstring for every key.

    Build it with :meth:`from_dict`, which validates and normalizes; direct construction
    validates the same way.
    """

    dataset: str
    target: str = "target"
    task: str | None = None
    impute: str = "mean"
    standardize: bool = True
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    synthetic: Synthetic = field(default_factory=Synthetic)
    augment: Augment | None = None
    class_weights: str = "none"
    resample: str = "none"

    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)
    layers: int = 2
    width: int = 64
    channels: int = 16
    activation: str | None = None
    dropout: float = 0.0
    batch_norm: bool = False
    init: str = "default"

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    l1: float = 0.0
    schedule: str = "none"
    warmup_epochs: int = 0
    step_size: int = 10
    gamma: float = 0.1
    grad_clip: float | None = None
    precision: str = "fp32"
    batch_size: int = 64
    max_epochs: int = 20
    loss: str | None = None
    label_smoothing: float = 0.0

    objective: tuple[str, ...] = ()
    direction: str | None = None
    early_stopping: EarlyStop | None = None
    restore_best: bool = True

    checkpoint_every_seconds: float = 30.0

    init_checkpoint: str | None = None
    freeze: tuple[str, ...] | int = ()

    user: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrainConfig:
        """Validate the effective config of a trial.

        Args:
            raw: ``{**training, **params}`` (see :func:`merge`).

        Returns:
            The frozen config.

        Raises:
            ValueError: a key is unknown, missing or has a bad value; the message names it.
        """
        values = dict(raw)
        if "hidden" in values:
            if "width" in values:
                raise _fail("hidden", "is an alias of 'width'; give only one of them")
            values["width"] = values.pop("hidden")
        if "entrypoint" in values:
            raise _fail("entrypoint", "user objectives are not built-in training configs")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise _fail(unknown[0], "unknown key (see workers/training/config.py for the keys)")
        if values.get("dataset") is None:
            raise _fail("dataset", "is required")
        return cls(**values)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize in place once, here

        dataset = self.dataset
        if not isinstance(dataset, str) or not (
            dataset in DATASETS or dataset.lower().endswith(FILE_SUFFIXES)
        ):
            raise _fail(
                "dataset",
                f"expected one of {', '.join(DATASETS)} or a *.csv/*.npz/*.parquet file, "
                f"got {dataset!r}",
            )
        if not isinstance(self.target, str) or not self.target:
            raise _fail("target", f"expected a column name, got {self.target!r}")
        if self.task is not None:
            set_(self, "task", _choice("task", self.task, ("classification", "regression")))
        set_(self, "impute", _optional_choice("impute", self.impute, ("mean", "median", "drop")))
        set_(self, "standardize", _bool("standardize", self.standardize))
        set_(
            self,
            "val_fraction",
            _float("val_fraction", self.val_fraction, 0, 1, low_open=True, high_open=True),
        )
        set_(
            self,
            "test_fraction",
            _float("test_fraction", self.test_fraction, 0, 1, high_open=True),
        )
        if self.val_fraction + self.test_fraction >= 0.9:
            raise _fail("val_fraction", "val_fraction + test_fraction must stay below 0.9")
        set_(self, "seed", _int("seed", self.seed, 0))
        if not isinstance(self.synthetic, Synthetic):
            set_(self, "synthetic", Synthetic.from_value(self.synthetic))
        if not isinstance(self.augment, Augment | None):
            set_(self, "augment", Augment.from_value(self.augment))
        set_(
            self,
            "class_weights",
            _optional_choice("class_weights", self.class_weights, ("balanced",)),
        )
        set_(
            self,
            "resample",
            _optional_choice("resample", self.resample, ("oversample", "undersample")),
        )

        model = self.model
        if not isinstance(model, str) or not (model.lower() in MODELS or _is_import_path(model)):
            raise _fail(
                "model",
                f"expected one of {', '.join(MODELS)} or 'package.module:Class', got {model!r}",
            )
        if model.lower() in MODELS:
            set_(self, "model", model.lower())
        if not isinstance(self.model_options, Mapping):
            raise _fail("model_options", f"expected a mapping, got {self.model_options!r}")
        set_(self, "model_options", dict(self.model_options))
        set_(self, "layers", _int("layers", self.layers, 0))
        if self.model in ("cnn", "rnn", "lstm", "gru") and self.layers < 1:
            raise _fail("layers", f"model {self.model} needs at least 1 layer")
        set_(self, "width", _int("width", self.width, 1))
        set_(self, "channels", _int("channels", self.channels, 1))
        if self.activation is not None:
            set_(self, "activation", _choice("activation", self.activation, ACTIVATIONS))
            if self.model == "rnn" and self.activation not in ("relu", "tanh"):
                raise _fail("activation", "model rnn takes relu or tanh")
        set_(self, "dropout", _float("dropout", self.dropout, 0, 1, high_open=True))
        set_(self, "batch_norm", _bool("batch_norm", self.batch_norm))
        init = _optional_choice("init", self.init, INITS)
        set_(self, "init", "default" if init == "none" else init)

        set_(self, "optimizer", _choice("optimizer", self.optimizer, OPTIMIZERS))
        set_(self, "lr", _float("lr", self.lr, 0, low_open=True))
        set_(self, "momentum", _float("momentum", self.momentum, 0, 1, high_open=True))
        set_(self, "nesterov", _bool("nesterov", self.nesterov))
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise _fail("nesterov", "needs optimizer sgd and momentum > 0")
        set_(self, "weight_decay", _float("weight_decay", self.weight_decay, 0))
        set_(self, "l1", _float("l1", self.l1, 0))
        set_(self, "schedule", _optional_choice("schedule", self.schedule, SCHEDULES[1:]))
        set_(self, "warmup_epochs", _int("warmup_epochs", self.warmup_epochs, 0))
        set_(self, "step_size", _int("step_size", self.step_size, 1))
        set_(self, "gamma", _float("gamma", self.gamma, 0, 1, low_open=True))
        if self.grad_clip is not None:
            set_(self, "grad_clip", _float("grad_clip", self.grad_clip, 0, low_open=True))
        set_(self, "precision", _choice("precision", self.precision, PRECISIONS))
        set_(self, "batch_size", _int("batch_size", self.batch_size, 1))
        set_(self, "max_epochs", _int("max_epochs", self.max_epochs, 1))
        if self.warmup_epochs >= self.max_epochs and self.schedule != "none":
            raise _fail("warmup_epochs", "must be smaller than max_epochs")
        if self.loss is not None:
            set_(self, "loss", _choice("loss", self.loss, LOSSES))
        set_(
            self,
            "label_smoothing",
            _float("label_smoothing", self.label_smoothing, 0, 1, high_open=True),
        )

        objective = self.objective
        if isinstance(objective, str):
            objective = (objective,)
        if not isinstance(objective, list | tuple) or not all(
            isinstance(o, str) for o in objective
        ):
            raise _fail(
                "objective", f"expected a metric name or a list of them, got {objective!r}"
            )
        names = []
        for name in objective:
            bare = name.lower().removeprefix("val_")
            if bare not in CLASSIFICATION_METRICS + REGRESSION_METRICS:
                raise _fail(
                    "objective",
                    f"unknown validation metric {name!r}; expected val_ + one of "
                    f"{', '.join(dict.fromkeys(CLASSIFICATION_METRICS + REGRESSION_METRICS))}",
                )
            names.append(f"val_{bare}")
        set_(self, "objective", tuple(names))
        if self.direction is not None:
            set_(self, "direction", _choice("direction", self.direction, ("maximize", "minimize")))
        if not isinstance(self.early_stopping, EarlyStop | None):
            set_(self, "early_stopping", EarlyStop.from_value(self.early_stopping))
        set_(self, "restore_best", _bool("restore_best", self.restore_best))
        set_(
            self,
            "checkpoint_every_seconds",
            _float("checkpoint_every_seconds", self.checkpoint_every_seconds, 0),
        )

        if self.init_checkpoint is not None and not isinstance(self.init_checkpoint, str):
            raise _fail("init_checkpoint", f"expected a file path, got {self.init_checkpoint!r}")
        freeze = self.freeze
        if freeze is None:
            freeze = ()
        if isinstance(freeze, str):
            freeze = (freeze,)
        if isinstance(freeze, list | tuple):
            if not all(isinstance(p, str) and p for p in freeze):
                raise _fail("freeze", f"expected parameter-name prefixes, got {freeze!r}")
            freeze = tuple(freeze)
        else:
            freeze = _int("freeze", freeze, 0)
        if freeze and self.init_checkpoint is None:
            raise _fail("freeze", "needs init_checkpoint (freezing random weights is pointless)")
        set_(self, "freeze", freeze)

        if not isinstance(self.user, Mapping):
            raise _fail("user", f"expected a mapping, got {self.user!r}")
        set_(self, "user", dict(self.user))

    @property
    def objective_metric(self) -> str:
        """The first objective: reported to the server, early stopping, best epoch."""
        return self.objective[0]

    @property
    def objective_direction(self) -> str:
        """``direction`` when given, else inferred from the objective metric."""
        if self.direction is not None:
            return self.direction
        bare = self.objective_metric.removeprefix("val_")
        return "minimize" if bare in MINIMIZED_METRICS else "maximize"

    def with_task_defaults(self, task: str) -> TrainConfig:
        """Fill objective and loss for ``task`` and check they fit it.

        Raises:
            ValueError: the objective or loss does not fit the task; the message names the key.
        """
        allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
        objective = self.objective or (
            ("val_accuracy",) if task == "classification" else ("val_mse",)
        )
        for name in objective:
            if name.removeprefix("val_") not in allowed:
                raise _fail(
                    "objective",
                    f"{name} is not a {task} metric; use one of "
                    f"{', '.join('val_' + m for m in allowed)}",
                )
        loss = self.loss or ("cross_entropy" if task == "classification" else "mse")
        if task == "classification" and loss not in ("cross_entropy", "bce"):
            raise _fail("loss", f"{loss} is a regression loss; use cross_entropy or bce")
        if task == "regression" and loss in ("cross_entropy", "bce"):
            raise _fail("loss", f"{loss} is a classification loss; use mse, mae or huber")
        return dataclasses.replace(self, objective=objective, loss=loss, task=task)
