from __future__ import annotations

import pytest

from workers.training.pruning import NullReporter
from workers.training.runner import run_trial


@pytest.mark.slow
def test_cnn_reaches_95_percent_on_digits() -> None:
    """Accuracy only: speed is measured by benchmarks/training_throughput.py, not by tests."""
    training = {"dataset": "digits", "model": "cnn", "max_epochs": 20}
    params = {
        "lr": 3e-3,
        "channels": 16,
        "layers": 2,
        "batch_norm": True,
        "dropout": 0.2,
        "schedule": "cosine",
    }
    result = run_trial(training, params, NullReporter(), None)
    assert result.metrics["test_accuracy"] >= 0.95, result.metrics
