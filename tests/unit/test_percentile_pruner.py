"""The server's percentile pruner decides as Optuna's does, on every report of random studies
(hposvc/samplers/percentile_pruner.py remembers each step's percentile between completions)."""

from __future__ import annotations

import math
import random

import optuna
from optuna.trial import TrialState

from hposvc.samplers.percentile_pruner import RememberingPercentilePruner

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _options(rng: random.Random) -> dict:
    return {
        "percentile": rng.choice([25.0, 50.0, 75.0, rng.uniform(0, 100)]),
        "n_startup_trials": rng.randint(0, 5),
        "n_warmup_steps": rng.randint(0, 3),
        "interval_steps": rng.randint(1, 3),
        "n_min_trials": rng.randint(1, 3),
    }


def test_it_prunes_exactly_when_optunas_pruner_does() -> None:
    decisions = pruned = 0
    for seed in range(40):
        d, p = _random_study(seed)
        decisions, pruned = decisions + d, pruned + p
    assert decisions > 10_000 and pruned > 500  # the comparison covered both answers


def _random_study(seed: int) -> tuple[int, int]:
    """Reports of up to 4 trials at a time, each decided by both pruners."""
    rng = random.Random(seed)
    options = _options(rng)
    ours = RememberingPercentilePruner(**options)
    theirs = optuna.pruners.PercentilePruner(**options)
    direction = rng.choice(["minimize", "maximize"])
    study = optuna.create_study(direction=direction)
    storage, sid = study._storage, study._study_id
    running: dict[int, int] = {}  # trial id -> its next step
    decisions = pruned = 0
    for _ in range(400):
        if not running or (len(running) < 4 and rng.random() < 0.3):
            running[storage.create_new_trial(sid)] = rng.choice([0, 1])
            continue
        tid = rng.choice(list(running))
        step = running[tid]
        running[tid] += rng.choice([1, 1, 1, 2])  # now and then a step is skipped
        value = math.nan if rng.random() < 0.03 else rng.gauss(1.0 / (step + 1), 0.2)
        storage.set_trial_intermediate_value(tid, step, value)
        frozen = storage.get_trial(tid)
        answer = ours.prune(study, frozen)
        assert answer == theirs.prune(study, frozen), (seed, tid, step, options)
        decisions += 1
        if answer or step >= 8 or rng.random() < 0.1:
            del running[tid]
            pruned += answer
            state = TrialState.PRUNED if answer else TrialState.COMPLETE
            storage.set_trial_state_values(tid, state, None if answer else [value])
    return decisions, pruned


def test_median_is_the_50th_percentile_and_pruning_happens_at_all() -> None:
    study = optuna.create_study()
    for i in range(6):  # completed curves 1/(step+1) + i/10
        trial = study.ask()
        for step in range(5):
            trial.report(1.0 / (step + 1) + i / 10, step)
        study.tell(trial, 1.0)
    worse = study.ask()
    worse.report(5.0, 0)
    frozen = study._storage.get_trial(worse._trial_id)
    assert bool(RememberingPercentilePruner(50.0).prune(study, frozen)) is True
    assert bool(optuna.pruners.MedianPruner().prune(study, frozen)) is True
