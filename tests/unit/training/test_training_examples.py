from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from training_helpers import ScriptedReporter

from workers.training.checkpoint import InMemoryCheckpointStore
from workers.training.config import TrainConfig, merge
from workers.training.pruning import NullReporter
from workers.training.runner import run_trial

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _spec(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def test_digits_spec_is_valid_and_a_trial_runs() -> None:
    spec = _spec("digits_cnn.yaml")
    assert set(spec) == {
        "name",
        "objectives",
        "search_space",
        "sampler",
        "pruner",
        "budget",
        "training",
    }
    assert spec["objectives"][0]["name"] == spec["training"]["objective"]
    assert spec["pruner"]["options"]["max_resource"] == spec["training"]["max_epochs"]
    params = {
        "lr": 3e-3,
        "layers": 2,
        "channels": 16,
        "dropout": 0.1,
        "optimizer": "sgd",
        "momentum": 0.9,
    }
    assert set(params) == set(spec["search_space"])  # every searched name is a config key
    TrainConfig.from_dict(merge(spec["training"], params))
    result = run_trial(spec["training"], {**params, "max_epochs": 2}, NullReporter(), None)
    assert result.epochs_run == 2


def test_user_objective_example_runs_prunes_and_resumes() -> None:
    spec = _spec("user_objective.yaml")
    training = {**spec["training"], "entrypoint": f"{EXAMPLES}/user_objective.py:objective"}
    params = {"alpha": 1e-4, "loss": "log_loss", "eta0": 0.01}
    result = run_trial(training, params, NullReporter(), InMemoryCheckpointStore())
    assert result.stopped == "completed"
    assert result.values[0] > 0.9
    assert result.metrics["test_accuracy"] > 0.9
    pruned = run_trial(training, params, ScriptedReporter(prune_at=3), None)
    assert (pruned.stopped, pruned.stop_epoch) == ("pruned", 3)
    store = InMemoryCheckpointStore()
    with pytest.raises(ConnectionError):
        run_trial(training, params, ScriptedReporter(crash_at=5), store)
    reporter = ScriptedReporter()
    run_trial(training, params, reporter, store)
    assert reporter.reports[0][0] == 5
