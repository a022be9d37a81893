"""The server's TPE sampler samples exactly what Optuna's does, on random studies
(hposvc/samplers/tpe.py keeps what it reads off finished trials between asks)."""

from __future__ import annotations

import math
import random
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from hposvc.samplers.tpe import RememberingTPESampler

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _options(rng: random.Random, conditional: bool) -> dict:
    multivariate = rng.random() < 0.7
    return {
        "n_startup_trials": rng.randint(0, 8),
        "n_ei_candidates": rng.choice([8, 24]),
        "multivariate": multivariate,
        "group": multivariate and conditional and rng.random() < 0.7,
        "constant_liar": rng.random() < 0.7,
    }


def _suggest(trial: optuna.Trial, conditional: bool) -> dict:
    params = {
        "x": trial.suggest_float("x", -5.0, 5.0),
        "lr": trial.suggest_float("lr", 1e-5, 1e-1, log=True),
        "n": trial.suggest_int("n", 1, 9, step=2),
        "act": trial.suggest_categorical("act", ["relu", "tanh", "gelu"]),
    }
    if conditional and params["act"] == "relu":
        params["slope"] = trial.suggest_float("slope", 0.0, 1.0)
    return params


def _loss(params: dict) -> float:
    return (
        params["x"] ** 2
        + abs(math.log10(params["lr"]) + 3)
        + params["n"] / 10
        + params.get("slope", 0.5)
    )


def _lockstep(
    seed: int, n_objectives: int, conditional: bool, n: int = 120, ties: bool = False
) -> tuple[int, int]:
    """Runs a study twice, once with each sampler, with up to 4 trials running at a time and
    trials completing, pruned after some steps, failing or infeasible; every ask must give the
    same parameters. With ``ties``, values repeat (which trial sorts first is then the trials'
    order) and some reports are NaN. Returns (asks after the start-up trials, trials
    finished)."""
    rng = random.Random(seed)
    options = _options(rng, conditional)
    directions = [rng.choice(["minimize", "maximize"]) for _ in range(n_objectives)]
    studies = [
        optuna.create_study(directions=directions, sampler=cls(seed=seed, **options))
        for cls in (RememberingTPESampler, optuna.samplers.TPESampler)
    ]
    running: list[tuple[optuna.Trial, optuna.Trial, dict]] = []
    asked = finished = 0
    for _ in range(n):
        if not running or (len(running) < 4 and rng.random() < 0.45):
            ours, theirs = (study.ask() for study in studies)
            params = _suggest(ours, conditional)
            assert _suggest(theirs, conditional) == params, (seed, ours.number, options)
            running.append((ours, theirs, params))
            asked += ours.number >= options["n_startup_trials"]
            continue
        pair = running.pop(rng.randrange(len(running)))
        params = pair[2]
        # with ties, few complete trials: pruned and infeasible ones reach the good group
        weights = [2, 6, 1] if ties else [6, 3, 1]
        outcome = rng.choices(["complete", "pruned", "fail"], weights)[0]
        steps = rng.randint(0, 4) if n_objectives == 1 else 0  # no reports with two
        infeasible = rng.random() < (0.3 if ties else 0.1)
        violation = float(rng.choice([1, 2])) if ties else 1.0
        loss = _loss(params) + rng.gauss(0, 0.1)
        if ties:
            loss = round(loss * 2) / 2
        reports = [loss + (0 if ties else 1 / (step + 1)) for step in range(steps)]
        if ties and reports and rng.random() < 0.3:
            reports[-1] = math.nan
        for study, trial in zip(studies, pair[:2], strict=True):
            if infeasible:
                trial.set_constraint("c", violation)
            for step, value in enumerate(reports):
                trial.report(value, step)
            if outcome == "complete":
                study.tell(trial, [loss + i for i in range(n_objectives)])
            elif outcome == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, state=TrialState.FAIL)
        finished += 1
    return asked, finished


@pytest.mark.parametrize("conditional", [False, True])
def test_it_samples_exactly_what_optunas_tpe_does(conditional: bool) -> None:
    asked = finished = 0
    for seed in range(12):
        a, f = _lockstep(seed, 1, conditional)
        asked, finished = asked + a, finished + f
    assert asked > 500 and finished > 400  # the comparison covered TPE's own samples


def test_it_samples_what_optunas_tpe_does_when_values_tie() -> None:
    asked = sum(_lockstep(seed, 1, seed % 2 == 1, n=150, ties=True)[0] for seed in range(8))
    assert asked > 500


def test_it_samples_exactly_what_optunas_tpe_does_with_two_objectives() -> None:
    asked = sum(_lockstep(seed, 2, False, n=80)[0] for seed in range(4))
    assert asked > 100


def test_it_samples_what_optuna_does_on_a_database_storage() -> None:
    """On a storage that hands out new trial objects, nothing kept is used."""
    rng = random.Random(3)
    options = {"multivariate": True, "constant_liar": True, "n_startup_trials": 3}
    studies = [
        optuna.create_study(
            storage=optuna.storages.RDBStorage("sqlite://"), sampler=cls(seed=5, **options)
        )
        for cls in (RememberingTPESampler, optuna.samplers.TPESampler)
    ]
    for _ in range(25):
        ours, theirs = (study.ask() for study in studies)
        params = _suggest(ours, False)
        assert _suggest(theirs, False) == params
        loss = _loss(params) + rng.gauss(0, 0.1)
        for study, trial in zip(studies, (ours, theirs), strict=True):
            study.tell(trial, loss)


def test_one_sampler_for_two_studies_on_their_own_storages() -> None:
    """Trial ids repeat across storages: what is kept for one study's trial 0 is not another's."""
    rng = random.Random(11)
    options = {"multivariate": True, "constant_liar": False, "n_startup_trials": 2}
    samplers = [
        cls(seed=2, **options) for cls in (RememberingTPESampler, optuna.samplers.TPESampler)
    ]
    pairs = [
        [optuna.create_study(sampler=sampler) for sampler in samplers] for _ in range(2)
    ]  # two studies, each run once with each sampler; a sampler serves both studies
    for i in range(40):
        ours, theirs = (study.ask() for study in pairs[i % 2])
        params = _suggest(ours, False)
        assert _suggest(theirs, False) == params, i
        loss = _loss(params) + rng.gauss(0, 0.1) + (i % 2) * 3
        for study, trial in zip(pairs[i % 2], (ours, theirs), strict=True):
            study.tell(trial, loss)
