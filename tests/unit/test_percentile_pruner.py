"""The server's percentile pruner decides as Optuna's does, on every report of random studies
(hposvc/samplers/percentile_pruner.py remembers each step's percentile between completions)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
import optuna
from optuna.trial import TrialState

from hposvc.samplers.percentile_pruner import RememberingPercentilePruner, linear_percentile

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


def test_one_pruner_decides_for_two_studies_and_on_a_database_storage() -> None:
    """Its kept values are per study, and a storage other than the in-memory one (whose trials
    it cannot follow) is filtered as Optuna does."""
    rng = random.Random(7)
    options = _options(rng)
    ours = RememberingPercentilePruner(**options)
    shared = optuna.storages.InMemoryStorage()
    studies = [_study_steps(seed, ours, options, 200, shared) for seed in (1, 2)]
    for _ in zip(*studies, strict=False):  # their reports interleave
        pass
    database = optuna.storages.RDBStorage("sqlite://")
    for _ in _study_steps(3, ours, options, 150, database):
        pass


def _random_study(seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    options = _options(rng)
    decisions = pruned = 0
    for answer in _study_steps(seed, RememberingPercentilePruner(**options), options, 400):
        decisions, pruned = decisions + 1, pruned + answer
    return decisions, pruned


def _study_steps(
    seed: int,
    ours: RememberingPercentilePruner,
    options: dict,
    n: int,
    storage: optuna.storages.BaseStorage | None = None,
) -> Iterator[bool]:
    """Reports of up to 4 trials at a time, each decided by both pruners (yields the answer);
    now and then a trial fails instead of completing."""
    rng = random.Random(seed + 1000)
    theirs = optuna.pruners.PercentilePruner(**options)
    direction = rng.choice(["minimize", "maximize"])
    study = optuna.create_study(direction=direction, storage=storage)
    storage, sid = study._storage, study._study_id
    running: dict[int, int] = {}  # trial id -> its next step
    for _ in range(n):
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
        yield answer
        if answer or step >= 8 or rng.random() < 0.1:
            del running[tid]
            if answer:
                storage.set_trial_state_values(tid, TrialState.PRUNED)
            elif rng.random() < 0.1:
                storage.set_trial_state_values(tid, TrialState.FAIL)
            else:
                storage.set_trial_state_values(tid, TrialState.COMPLETE, [value])


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


def test_its_percentile_is_numpys_to_the_bit() -> None:
    rng = random.Random(5)
    for _ in range(20_000):
        n = rng.randint(0, 40)
        values = [round(rng.gauss(0, 1), rng.choice([1, 3, 17])) for _ in range(n)]  # ties too
        values += [math.nan] * rng.choice([0, 0, 1, 3])
        rng.shuffle(values)
        percentile = rng.choice([0.0, 25.0, 50.0, 75.0, 100.0, rng.uniform(0, 100)])
        percentile = rng.choice([percentile, 100 - percentile])  # as for a maximized study
        ours = linear_percentile(sorted(v for v in values if not math.isnan(v)), percentile)
        if not any(not math.isnan(v) for v in values):
            assert math.isnan(ours)
            continue
        theirs = float(np.nanpercentile(np.array(values, dtype=float), percentile))
        assert ours == theirs, (values, percentile, ours, theirs)
