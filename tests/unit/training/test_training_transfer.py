from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from training_helpers import DIGITS_CNN, train

from workers.training.checkpoint import FileCheckpointStore
from workers.training.pruning import NullReporter
from workers.training.runner import run_trial


def _state(blob: bytes | None) -> dict[str, torch.Tensor]:
    assert blob is not None
    return torch.load(io.BytesIO(blob), weights_only=True)


@pytest.fixture
def pretrained(tmp_path: Path) -> Path:
    path = tmp_path / "pretrained.pt"
    path.write_bytes(train(DIGITS_CNN, max_epochs=6, lr=3e-3).model_state)  # type: ignore[arg-type]
    return path


def test_warm_start_with_frozen_features_keeps_them(pretrained: Path) -> None:
    source = _state(pretrained.read_bytes())
    result = train(DIGITS_CNN, init_checkpoint=str(pretrained), freeze=["features."], seed=5)
    tuned = _state(result.model_state)
    for name, tensor in source.items():
        if name.startswith("features."):
            assert torch.equal(tuned[name], tensor), name  # weights and BN statistics
    assert not torch.equal(tuned["head.1.weight"], source["head.1.weight"])


def test_freeze_first_n_layers(pretrained: Path) -> None:
    source = _state(pretrained.read_bytes())
    tuned = _state(train(DIGITS_CNN, init_checkpoint=str(pretrained), freeze=1).model_state)
    assert torch.equal(tuned["features.0.weight"], source["features.0.weight"])
    assert not torch.equal(tuned["head.1.weight"], source["head.1.weight"])


def test_warm_start_starts_from_the_checkpoint(pretrained: Path) -> None:
    cold = train(DIGITS_CNN, max_epochs=1)
    warm = train(DIGITS_CNN, max_epochs=1, init_checkpoint=str(pretrained))
    assert warm.history[0]["train_loss"] < 0.7 * cold.history[0]["train_loss"]


def test_full_checkpoint_file_and_a_new_head(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path / "full.pt")
    run_trial(DIGITS_CNN, {"checkpoint_every_seconds": 0}, NullReporter(), store)
    # a 10-class checkpoint into a 2-class model: the head does not fit and stays fresh
    data = {
        **DIGITS_CNN,
        "dataset": "synthetic_sequence",
        "synthetic": {"samples": 200, "seq_len": 8, "features": 8},
    }
    result = train(data, init_checkpoint=str(store.path), freeze=["features."])
    assert result.epochs_run == 2


def test_bad_init_checkpoint_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'init_checkpoint'"):
        train(DIGITS_CNN, init_checkpoint=str(tmp_path / "missing.pt"))
    other = tmp_path / "other.pt"
    torch.save({"unrelated": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="'init_checkpoint'"):
        train(DIGITS_CNN, init_checkpoint=str(other))
