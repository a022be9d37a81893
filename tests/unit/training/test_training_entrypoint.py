from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import ScriptedReporter

from workers.training.checkpoint import InMemoryCheckpointStore
from workers.training.pruning import NullReporter
from workers.training.runner import run_trial

TRAINING = {"entrypoint": "training_user_code:objective"}


def test_user_objective_reports_and_returns() -> None:
    reporter = ScriptedReporter()
    result = run_trial(TRAINING, {"x": 0.5, "steps": 4}, reporter, None)
    assert result.stopped == "completed"
    assert result.values == [1 - 0.5 / 4]
    assert [s for s, _ in reporter.reports] == [1, 2, 3, 4]
    assert result.history[-1] == {"step": 4, "value": 1 - 0.5 / 4}
    assert result.epochs_run == 4


def test_user_objective_pruned_returns_pruned() -> None:
    reporter = ScriptedReporter(prune_at=2)
    result = run_trial(TRAINING, {"x": 0.5, "steps": 5}, reporter, None)
    assert result.stopped == "pruned"
    assert result.stop_epoch == 2
    assert result.values == [1 - 0.5 / 2]
    assert [s for s, _ in reporter.reports] == [1, 2]


def test_user_objective_checkpoints_and_resumes() -> None:
    store = InMemoryCheckpointStore()
    with pytest.raises(ConnectionError):
        run_trial(TRAINING, {"x": 1.0, "steps": 5}, ScriptedReporter(crash_at=3), store)
    reporter = ScriptedReporter()
    run_trial(TRAINING, {"x": 1.0, "steps": 5}, reporter, store)
    assert [s for s, _ in reporter.reports] == [3, 4, 5]


def test_dict_return_gives_values_and_metrics() -> None:
    training = {"entrypoint": "training_user_code:objective_dict"}
    result = run_trial(training, {"a": 1, "b": 2.5}, NullReporter(), None)
    assert result.values == [1.0, 2.5]
    assert result.metrics == {"size": 3.0}


def test_entrypoint_from_a_file_path(tmp_path: Path) -> None:
    file = tmp_path / "my_objective.py"
    file.write_text(
        "def run(params, ctx):\n    ctx.report(1, params['v'])\n    return [params['v']]\n"
    )
    result = run_trial({"entrypoint": f"{file}:run"}, {"v": 0.25}, NullReporter(), None)
    assert result.values == [0.25]


def test_bad_entrypoints_name_the_key() -> None:
    with pytest.raises(ValueError, match="'entrypoint'"):
        run_trial({"entrypoint": "no_such_module_xyz:f"}, {}, NullReporter(), None)
    with pytest.raises(ValueError, match="'entrypoint'"):
        run_trial({"entrypoint": "training_user_code"}, {}, NullReporter(), None)
    with pytest.raises(ValueError, match="must return"):
        run_trial({"entrypoint": "training_user_code:objective_bad"}, {}, NullReporter(), None)
