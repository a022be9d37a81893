"""Dashboard figures: a sample of a large study is drawn with its trials' own numbers."""

from __future__ import annotations

import copy
import json

from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from hposvc.samplers.figures import LIMITS, OPTUNA_KINDS, build_figure


def _study_trials(n: int) -> list[FrozenTrial]:
    """Odd numbers pruned; trial k reports k at steps 1 and 2, and completes with value k."""
    dists = {"x": FloatDistribution(0.0, 1.0), "y": FloatDistribution(0.0, 1.0)}
    trials = []
    for k in range(n):
        pruned = k % 2 == 1
        trial = create_trial(
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
            params={"x": k / n, "y": (k * 7 % n) / n},
            distributions=dists,
            value=None if pruned else float(k),
            intermediate_values={1: float(k), 2: float(k)},
        )
        trial.number = k
        trials.append(trial)
    return trials


def test_a_sampled_chart_names_each_curve_by_its_trials_number() -> None:
    trials = _study_trials(1000)
    assert LIMITS["intermediate"] is not None and LIMITS["intermediate"] < len(trials)
    fig = json.loads(
        build_figure("intermediate", trials, directions=["minimize"], objective_names=["loss"])
    )
    curves = [d for d in fig["data"] if d.get("name", "").startswith("Trial")]
    assert len(curves) == LIMITS["intermediate"]
    numbers = set()
    for curve in curves:
        label = curve["name"]
        number = int(label[5:].split(" ")[0])
        numbers.add(number)
        assert curve["y"] == [float(number), float(number)], label  # trial `number`'s values
        assert label.endswith("(pruned)") == (number % 2 == 1), label
    assert max(numbers) > LIMITS["intermediate"]  # the sample spans the study


def test_drawing_leaves_the_snapshot_as_it_was() -> None:
    trials = _study_trials(2500)
    before = copy.deepcopy(trials)
    for kind in OPTUNA_KINDS:
        if kind != "pareto":
            build_figure(kind, trials, directions=["minimize"], objective_names=["loss"])
    assert trials == before
    assert [t._trial_id for t in trials] == [t._trial_id for t in before]
