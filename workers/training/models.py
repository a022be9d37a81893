"""Model builders: MLP, CNN, RNN/LSTM/GRU and user classes; weight init; freezing layers."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from workers.training.config import TrainConfig

logger = logging.getLogger(__name__)

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)


class MLP(nn.Module):
    """``layers`` x [Linear, BatchNorm?, activation, Dropout?] then a Linear head."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        layers: int,
        width: int,
        activation: str,
        dropout: float,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        size = in_features
        for _ in range(layers):
            blocks.append(nn.Linear(size, width))
            if batch_norm:
                blocks.append(nn.BatchNorm1d(width))
            blocks.append(_ACTIVATIONS[activation]())
            if dropout:
                blocks.append(nn.Dropout(dropout))
            size = width
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(size, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))


class CNN(nn.Module):
    """Conv blocks (3x3, BatchNorm?, activation, 2x2 max-pool while the map is >= 4 pixels),
    then Linear(width), activation, Dropout and a Linear head."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        out_features: int,
        *,
        layers: int,
        channels: int,
        width: int,
        activation: str,
        dropout: float,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks.append(nn.Conv2d(c, channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(channels))
            blocks.append(_ACTIVATIONS[activation]())
            c = channels
            if h >= 4 and w >= 4:
                blocks.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
                channels *= 2
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(c * h * w, width)]
        head.append(_ACTIVATIONS[activation]())
        if dropout:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(width, out_features))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Recurrent(nn.Module):
    """RNN/LSTM/GRU over (batch, time, features); the last step's output feeds a Linear head."""

    def __init__(
        self,
        kind: str,
        input_shape: tuple[int, int],
        out_features: int,
        *,
        layers: int,
        width: int,
        activation: str,
        dropout: float,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        kwargs = {"nonlinearity": activation} if kind == "rnn" else {}
        rnn_class = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = rnn_class(
            input_size=input_shape[-1],
            hidden_size=width,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
            **kwargs,
        )
        self.norm = nn.BatchNorm1d(width) if batch_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(self.dropout(self.norm(out[:, -1])))


def build_model(cfg: TrainConfig, input_shape: tuple[int, ...], output_dim: int) -> nn.Module:
    """Build the model ``cfg.model`` for samples of ``input_shape`` and ``output_dim`` outputs.

    Raises:
        ValueError: the model cannot be built for this data (names the key).
    """
    name = cfg.model
    if ":" in name:
        model = _user_model(name, input_shape, output_dim, cfg.model_options)
    else:
        if cfg.model_options:
            raise ValueError("training config key 'model_options': only for user models")
        activation = cfg.activation or ("tanh" if name == "rnn" else "relu")
        common = {
            "layers": cfg.layers,
            "width": cfg.width,
            "activation": activation,
            "dropout": cfg.dropout,
            "batch_norm": cfg.batch_norm,
        }
        if name == "mlp":
            in_features = 1
            for size in input_shape:
                in_features *= size
            model = MLP(in_features, output_dim, **common)
        elif name == "cnn":
            model = CNN(input_shape, output_dim, channels=cfg.channels, **common)  # type: ignore[arg-type]
        else:
            model = Recurrent(name, input_shape, output_dim, **common)  # type: ignore[arg-type]
    if cfg.init != "default":
        init_weights(model, cfg.init)
    return model


def _user_model(
    path: str, input_shape: tuple[int, ...], output_dim: int, options: dict[str, object]
) -> nn.Module:
    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"training config key 'model': cannot import {path}: {exc}") from exc
    try:
        model = cls(input_shape, output_dim, **options)
    except TypeError as exc:
        raise ValueError(
            f"training config key 'model_options': {path}(input_shape, output_dim, **options) "
            f"failed: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ValueError(f"training config key 'model': {path} did not build a torch nn.Module")
    return model


def init_weights(model: nn.Module, scheme: str) -> None:
    """Re-initialize every weight matrix/kernel with ``scheme``; biases become zero."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _NORMS):
                continue
            for name, param in module.named_parameters(recurse=False):
                if param.dim() >= 2:
                    if scheme == "xavier":
                        nn.init.xavier_uniform_(param)
                    elif scheme == "kaiming":
                        nn.init.kaiming_normal_(param, nonlinearity="relu")
                    elif scheme == "orthogonal":
                        nn.init.orthogonal_(param)
                    else:
                        raise ValueError(f"training config key 'init': unknown {scheme!r}")
                elif name.startswith("bias"):
                    nn.init.zeros_(param)


def freeze(model: nn.Module, spec: tuple[str, ...] | int) -> list[str]:
    """Freeze parameters by name prefix, or the first N weight layers (with their norms).

    Returns:
        The names of the modules whose parameters are all frozen (the loop keeps them in eval
        mode, so batch-norm statistics stay as loaded).

    Raises:
        ValueError: a prefix matches no parameter, or N exceeds the number of layers.
    """
    if isinstance(spec, int):
        names = _first_layers(model, spec)
        prefixes = tuple(f"{n}." for n in names)
    else:
        prefixes = spec
    frozen_params = 0
    for prefix in prefixes:
        matched = [p for n, p in model.named_parameters() if n.startswith(prefix)]
        if not matched:
            raise ValueError(
                f"training config key 'freeze': {prefix!r} matches no parameter; names start "
                f"with {sorted({n.split('.')[0] for n, _ in model.named_parameters()})}"
            )
        for param in matched:
            param.requires_grad_(False)
        frozen_params += len(matched)
    frozen_modules = [
        name
        for name, module in model.named_modules()
        if name
        and any(True for _ in module.parameters())
        and not any(p.requires_grad for p in module.parameters())
    ]
    logger.info("froze %d parameter tensors (%s)", frozen_params, ", ".join(prefixes))
    return frozen_modules


def _first_layers(model: nn.Module, count: int) -> list[str]:
    """Names of the leaf modules up to the count-th weight layer (norms go with their layer)."""
    leaves = [
        (name, module)
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]
    weight_layers = [name for name, m in leaves if not isinstance(m, _NORMS)]
    if count > len(weight_layers):
        raise ValueError(
            f"training config key 'freeze': the model has {len(weight_layers)} layers, "
            f"cannot freeze {count}"
        )
    names: list[str] = []
    seen = 0
    for name, module in leaves:
        if not isinstance(module, _NORMS):
            if seen == count:
                break
            seen += 1
        names.append(name)
    return names
