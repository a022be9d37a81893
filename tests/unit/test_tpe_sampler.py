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
    seed: int,
    n_objectives: int,
    conditional: bool,
    n: int = 120,
    ties: bool = False,
    ahead: bool = False,
) -> tuple[int, int]:
    """Runs a study twice, once with each sampler, with up to 4 trials running at a time and
    trials completing, pruned after some steps, failing or infeasible; every ask must give the
    same parameters. With ``ties``, values repeat (which trial sorts first is then the trials'
    order) and some reports are NaN. With ``ahead``, the server's sampler works out the next
    sample ahead, as the server does while it waits, before half of the asks and trials'
    ends (always with ``constant_liar`` and ``multivariate``). Returns (asks after the
    start-up trials, trials finished)."""
    rng = random.Random(seed)
    options = _options(rng, conditional)
    if ahead:  # what sampling ahead works for
        options["constant_liar"] = options["multivariate"] = True
    directions = [rng.choice(["minimize", "maximize"]) for _ in range(n_objectives)]
    studies = [
        optuna.create_study(directions=directions, sampler=cls(seed=seed, **options))
        for cls in (RememberingTPESampler, optuna.samplers.TPESampler)
    ]
    running: list[tuple[optuna.Trial, optuna.Trial, dict]] = []
    asked = finished = 0
    for _ in range(n):
        if ahead and rng.random() < 0.5:  # else what ends or starts next comes first
            ours_study = studies[0]
            ours_study.sampler.sample_ahead(ours_study, len(ours_study.trials))
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


@pytest.mark.parametrize(("n_objectives", "conditional"), [(1, False), (1, True), (2, False)])
def test_a_sample_worked_out_ahead_is_the_one_the_ask_would_draw(
    n_objectives: int, conditional: bool
) -> None:
    """Samples worked out ahead, then trials finishing (into either group) or starting before
    the ask: the asks still give Optuna's samples, and on every seed some took one."""
    taken = asked = 0
    before = RememberingTPESampler.sample_ahead

    def counted(self: RememberingTPESampler, study: optuna.Study, number: int) -> None:
        nonlocal taken
        before(self, study, number)
        taken = max(taken, self.taken_ahead)

    for seed in range(6):
        taken = 0
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(RememberingTPESampler, "sample_ahead", counted)
            a, _ = _lockstep(seed, n_objectives, conditional, n=150, ahead=True)
        asked += a
        assert taken > 0, seed  # the mechanism was used
    assert asked > 150


def test_a_sample_worked_out_ahead_is_not_taken_from_another_random_state() -> None:
    """The server reseeds the sampler per trial number: a sample worked out for one seed is
    not the ask's under another, though every trial is the same."""
    options = {"multivariate": True, "constant_liar": True, "n_startup_trials": 3}
    studies = [
        optuna.create_study(sampler=cls(seed=1, **options))
        for cls in (
            RememberingTPESampler,
            optuna.samplers.TPESampler,
        )
    ]
    for _ in range(12):
        ours, theirs = (study.ask() for study in studies)
        params = _suggest(ours, False)
        assert _suggest(theirs, False) == params
        for study, trial in zip(studies, (ours, theirs), strict=True):
            study.tell(trial, _loss(params))
    sampler = studies[0].sampler
    sampler.sample_ahead(studies[0], 12)
    for study in studies:
        study.sampler._rng.rng.seed(99)
    ours, theirs = (study.ask() for study in studies)
    assert _suggest(ours, False) == _suggest(theirs, False)
    assert sampler.taken_ahead == 0
    sampler.sample_ahead(studies[0], 13)  # and under the same state, it is taken
    _suggest(studies[0].ask(), False)
    assert sampler.taken_ahead == 1


class _Twins:
    """A study on the server's sampler and one on Optuna's, driven alike."""

    def __init__(self) -> None:
        options = {"multivariate": True, "constant_liar": True, "n_startup_trials": 5}
        self.studies = [
            optuna.create_study(sampler=cls(seed=7, **options))
            for cls in (RememberingTPESampler, optuna.samplers.TPESampler)
        ]
        self.sampler = self.studies[0].sampler
        self.running: list[tuple[optuna.Trial, optuna.Trial]] = []

    def ask(self) -> dict:
        ours, theirs = (study.ask() for study in self.studies)
        params = _suggest(ours, False)
        assert _suggest(theirs, False) == params
        self.running.append((ours, theirs))
        return params

    def end(self, state: TrialState, loss: float | None = None) -> None:
        pair = self.running.pop(0)
        for study, trial in zip(self.studies, pair, strict=True):
            trial.report(1.0, 0)
            study.tell(trial, loss, state=state)

    def ahead(self) -> None:
        self.sampler.sample_ahead(self.studies[0], len(self.studies[0].trials))


def test_a_sample_worked_out_ahead_is_taken_only_while_what_it_came_from_holds() -> None:
    twins = _Twins()
    for i in range(21):  # TPE's good group: 3 trials at 21 to 30 finished
        twins.ask()
        twins.end(TrialState.COMPLETE, 10.0 + i)
    twins.ask()
    twins.ask()  # two running: both in the bad group
    twins.ahead()
    twins.end(TrialState.PRUNED)  # into the bad group: the same observations
    twins.ask()
    assert twins.sampler.taken_ahead == 1
    twins.ahead()
    twins.end(TrialState.COMPLETE, 0.0)  # the best: the good group changes
    twins.ask()
    assert twins.sampler.taken_ahead == 1
    twins.ahead()
    twins.end(TrialState.FAIL)  # leaves the bad group
    twins.ask()
    assert twins.sampler.taken_ahead == 1
    twins.ahead()
    twins.ask()  # at once: taken
    assert twins.sampler.taken_ahead == 2
