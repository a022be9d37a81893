from __future__ import annotations

import pytest
import torch
from torch import nn
from training_helpers import IRIS, train

from workers.training.config import TrainConfig
from workers.training.models import build_model, freeze


def _build(**raw: object) -> nn.Module:
    cfg = TrainConfig.from_dict({"dataset": "digits", **raw})
    shapes = {"mlp": (64,), "cnn": (1, 8, 8)}
    return build_model(cfg, shapes.get(cfg.model, (8, 8)), 10)


@pytest.mark.parametrize("model", ["mlp", "cnn", "rnn", "lstm", "gru"])
def test_each_model_builds_and_a_training_step_changes_it(model: str) -> None:
    net = _build(model=model, layers=2, width=16, channels=4, batch_norm=True, dropout=0.1)
    shape = {"mlp": (64,), "cnn": (1, 8, 8)}.get(model, (8, 8))
    x, y = torch.randn(32, *shape), torch.randint(0, 10, (32,))
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    optimizer.step()
    assert net(x).shape == (32, 10)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in net.modules())
    assert any(isinstance(m, nn.Dropout) for m in net.modules())


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "cnn"])
def test_sequence_and_image_models_train_end_to_end(model: str) -> None:
    base = {
        "dataset": "synthetic_sequence",
        "model": model,
        "max_epochs": 2,
        "width": 16,
        "layers": 1,
        "channels": 4,
        "synthetic": {"samples": 300, "features": 3},
    }
    result = train(base)
    assert result.epochs_run == 2
    assert 0 <= result.metrics["test_accuracy"] <= 1


@pytest.mark.parametrize(
    ("activation", "module"),
    [("relu", nn.ReLU), ("gelu", nn.GELU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid)],
)
def test_activation(activation: str, module: type[nn.Module]) -> None:
    net = _build(model="mlp", activation=activation)
    assert sum(isinstance(m, module) for m in net.modules()) == 2
    assert train(activation=activation).epochs_run == 3


def test_rnn_takes_its_activation_as_nonlinearity() -> None:
    assert _build(model="rnn", activation="relu").rnn.nonlinearity == "relu"  # type: ignore[union-attr]
    assert _build(model="rnn").rnn.nonlinearity == "tanh"  # type: ignore[union-attr]


def test_inits() -> None:
    torch.manual_seed(0)
    weight = _build(model="mlp", width=64, init="orthogonal").body[0].weight  # type: ignore[index]
    assert torch.allclose(weight @ weight.T, torch.eye(64), atol=1e-4)
    torch.manual_seed(0)
    xavier = _build(model="mlp", width=256, init="xavier").body[0].weight  # type: ignore[index]
    bound = (6 / (64 + 256)) ** 0.5
    assert xavier.abs().max() <= bound
    assert xavier.abs().max() > 0.9 * bound
    torch.manual_seed(0)
    kaiming = _build(model="mlp", width=256, init="kaiming").body[0].weight  # type: ignore[index]
    assert kaiming.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.05)
    torch.manual_seed(0)
    default = _build(model="mlp", width=256).body[0].weight  # type: ignore[index]
    assert default.std().item() < 0.5 * kaiming.std().item()
    bias = _build(model="cnn", init="kaiming").features[0].bias  # type: ignore[index]
    assert torch.count_nonzero(bias) == 0


def test_user_model_gets_shapes_and_options() -> None:
    net = build_model(
        TrainConfig.from_dict(
            {
                "dataset": "iris",
                "model": "training_user_code:TinyNet",
                "model_options": {"hidden": 5},
            }
        ),
        (4,),
        3,
    )
    assert net.net[1].out_features == 5  # type: ignore[index]
    assert net.input_shape == (4,)  # type: ignore[comparison-overlap]
    result = train(IRIS, model="training_user_code:TinyNet", model_options={"hidden": 6})
    assert result.epochs_run == 3
    with pytest.raises(ValueError, match="'model'"):
        train(IRIS, model="training_user_code:Missing")
    with pytest.raises(ValueError, match="'model_options'"):
        train(IRIS, model="training_user_code:TinyNet", model_options={"depth": 3})


def test_freeze_first_layers_and_by_prefix() -> None:
    net = _build(model="mlp", layers=3, batch_norm=True)
    frozen = freeze(net, 1)
    assert frozen == ["body.0", "body.1"]  # the first Linear and its batch norm
    assert not net.body[0].weight.requires_grad  # type: ignore[index]
    assert net.body[3].weight.requires_grad  # type: ignore[index]
    net = _build(model="cnn")
    freeze(net, ("features.",))
    assert all(not p.requires_grad for p in net.features.parameters())  # type: ignore[union-attr]
    assert all(p.requires_grad for p in net.head.parameters())  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="'freeze'"):
        freeze(net, ("encoder.",))
    with pytest.raises(ValueError, match="'freeze'"):
        freeze(_build(model="mlp"), 9)
