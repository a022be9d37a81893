"""A contract every sampler of the registry keeps, driven through StudyCache (no database).

The cache is what the services use: ask, report, finish, and sync from the rows the database
holds. Records here go through JSON the way the database stores them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import product
from typing import Any, get_args

import pytest

from hposvc.domain.states import TrialState
from hposvc.samplers import AskResult, StudyCache, TrialRecord
from hposvc.samplers.cache import _reseed
from hposvc.samplers.registry import _PRUNER_OPTIONS, _SAMPLER_OPTIONS, build_pruner, build_sampler
from hposvc.samplers.tpe import RememberingTPESampler
from hposvc.schemas.search_space import contains, is_active
from hposvc.schemas.studies import PrunerName, SamplerName, StudySpec

SAMPLERS = list(get_args(SamplerName))
PRUNERS = list(get_args(PrunerName))
N_TRIALS = 12
SEED = 11

# One space every sampler can take, grid included (floats have a step there).
GRID_SPACE: dict[str, Any] = {
    "x": {"type": "float", "low": -1.0, "high": 1.0, "step": 0.5},
    "n": {"type": "int", "low": 1, "high": 4},
    "opt": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop"]},
    "momentum": {"type": "float", "low": 0.0, "high": 0.9, "step": 0.3, "when": {"opt": ["sgd"]}},
}
SPACE: dict[str, Any] = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "x": {"type": "float", "low": -1.0, "high": 1.0, "step": 0.25},
    "width": {"type": "int", "low": 8, "high": 256, "log": True},
    "depth": {"type": "int", "low": 1, "high": 9, "step": 2},
    "nesterov": {"type": "categorical", "choices": [True, False], "when": {"opt": ["sgd"]}},
    "opt": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop"]},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"opt": ["sgd", "rmsprop"]}},
    "decay": {"type": "float", "low": 0.0, "high": 1.0, "when": {"nesterov": [True]}},
}
SAMPLER_OPTIONS: dict[str, dict[str, Any]] = {
    "tpe": {"n_startup_trials": 4},
    "gp": {"n_startup_trials": 3},
    "nsga2": {"population_size": 4},
}
PRUNER_OPTIONS: dict[str, dict[str, Any]] = {
    "median": {"n_startup_trials": 2},
    "percentile": {"percentile": 50.0, "n_startup_trials": 2},
    "successive_halving": {"min_resource": 1},
    "hyperband": {"min_resource": 1},  # max_resource comes from training.max_epochs
    "threshold": {"upper": 3.0},
}


def make_study_spec(
    sampler: str,
    pruner: str = "none",
    *,
    seed: int | None = SEED,
    space: dict[str, Any] | None = None,
    objectives: int = 1,
) -> StudySpec:
    if space is None:
        space = GRID_SPACE if sampler == "grid" else SPACE
    return StudySpec.model_validate(
        {
            "name": f"{sampler}-{pruner}",
            "objectives": [
                {"name": f"obj{i}", "direction": "minimize" if i == 0 else "maximize"}
                for i in range(objectives)
            ],
            "search_space": space,
            "sampler": {
                "name": sampler,
                "seed": seed,
                "options": SAMPLER_OPTIONS.get(sampler, {}),
            },
            "pruner": {"name": pruner, "options": PRUNER_OPTIONS.get(pruner, {})},
            "budget": {"max_trials": 1000},
            "training": {"max_epochs": 4},
        }
    )


def _json(value: Any) -> Any:
    """What the database gives back: everything has been through JSON."""
    return json.loads(json.dumps(value))


def objective(params: dict[str, Any]) -> float:
    value = (params["x"] - 0.3) ** 2
    value += 0.1 * params.get("n", params.get("depth", 1))
    value += {"sgd": 0.5, "adam": 0.0, "rmsprop": 0.25}.get(params["opt"], 0.1)
    return value - 0.2 * params.get("momentum", 0.0)


@dataclass
class Row:
    """One trial as the database would hold it."""

    number: int
    state: TrialState
    params: dict[str, Any]
    distributions: dict[str, str]
    system_attrs: dict[str, Any]
    values: list[float] | None = None
    intermediate_values: dict[int, float] = field(default_factory=dict)

    def record(self) -> TrialRecord:
        return TrialRecord(
            number=self.number,
            state=self.state,
            params=_json(self.params),
            distributions=_json(self.distributions),
            values=_json(self.values),
            intermediate_values=dict(self.intermediate_values),
            system_attrs=_json(self.system_attrs),
        )


class Driver:
    """Plays the services' part against one cache: ask, report, finish, keep the rows."""

    def __init__(self, spec: StudySpec, study_id: int = 1) -> None:
        self.spec = spec
        self.cache = StudyCache(study_id, spec)
        self.cache.sync({}, [], 0)
        self.rows: list[Row] = []
        self.study_attrs: dict[str, Any] = {}

    def ask(self) -> AskResult | None:
        asked = self.cache.ask()
        if asked is None:
            return None
        assert asked.number == len(self.rows)
        self.rows.append(
            Row(
                asked.number,
                TrialState.RUNNING,
                dict(asked.params),
                dict(asked.distributions),
                dict(asked.system_attrs),
            )
        )
        self.study_attrs = dict(asked.study_system_attrs)
        return asked

    def run(self, asked: AskResult, *, fail: bool = False) -> TrialState:
        """Report a learning curve (the pruner may stop it), then finish the trial."""
        row = self.rows[asked.number]
        n_objectives = len(self.spec.objectives)
        final = objective(asked.params)
        if fail:
            self.cache.finish(row.number, TrialState.FAIL, None)
            row.state = TrialState.FAIL
            return row.state
        if n_objectives == 1:
            for step in range(1, 5):
                value = final * (1 + 1 / step) + 0.01 * asked.number
                result = self.cache.report(row.number, step, value)
                row.intermediate_values[step] = value
                row.system_attrs = dict(result.system_attrs)
                if result.should_prune:
                    self.cache.finish(row.number, TrialState.PRUNED, [value])
                    row.state, row.values = TrialState.PRUNED, [value]
                    return row.state
        values = [final] + [float(i) * asked.params["x"] for i in range(1, n_objectives)]
        self.cache.finish(row.number, TrialState.COMPLETE, values)
        row.state, row.values = TrialState.COMPLETE, values
        return row.state

    def records(self) -> list[TrialRecord]:
        return [row.record() for row in self.rows]

    def rebuilt(self) -> StudyCache:
        """A new cache synced with every row, as after a restart."""
        cache = StudyCache(self.cache.study_id, self.spec)
        cache.sync(_json(self.study_attrs), self.records(), seq=len(self.rows))
        return cache


def assert_in_space(spec: StudySpec, params: dict[str, Any]) -> None:
    """Each value is legal; a conditional parameter appears exactly when it is active."""
    for name, param in spec.search_space.ordered():
        if is_active(param, params):
            assert name in params, f"{name} is active but missing from {params}"
            assert contains(param, params[name]), f"{name}={params[name]!r} is outside {param}"
        else:
            assert name not in params, f"{name} is inactive but given in {params}"
    assert set(params) <= set(spec.search_space.root)


def run_trials(driver: Driver, n: int, *, batch: int = 2) -> list[AskResult]:
    """Ask ``batch`` at a time (trials run side by side), then finish them; every 5th fails."""
    asked_all: list[AskResult] = []
    while len(asked_all) < n:
        batch_asked = []
        for _ in range(min(batch, n - len(asked_all))):
            asked = driver.ask()
            assert asked is not None
            batch_asked.append(asked)
        for asked in batch_asked:
            driver.run(asked, fail=asked.number % 5 == 4)
        asked_all.extend(batch_asked)
    return asked_all


def test_the_registry_covers_every_name() -> None:
    assert set(SAMPLERS) == set(_SAMPLER_OPTIONS)
    assert set(PRUNERS) == set(_PRUNER_OPTIONS)
    assert set(SAMPLERS) == {"grid", "random", "tpe", "gp", "cmaes", "qmc", "nsga2"}
    for name in SAMPLERS:
        build_sampler(make_study_spec(name))
    for name in PRUNERS:
        build_pruner(make_study_spec("random", name))


# Every pruner runs with the cheap samplers; GP (slow) runs with two.
COMBINATIONS = [
    (s, p) for s, p in product(SAMPLERS, PRUNERS) if s != "gp" or p in ("none", "median")
]


@pytest.mark.parametrize(("sampler", "pruner"), COMBINATIONS)
def test_asked_trials_are_in_the_space_and_finish(sampler: str, pruner: str) -> None:
    spec = make_study_spec(sampler, pruner)
    driver = Driver(spec)
    asked = run_trials(driver, N_TRIALS)
    assert [a.number for a in asked] == list(range(N_TRIALS))
    for a in asked:
        assert_in_space(spec, a.params)
        assert not a.was_waiting
        assert set(a.distributions) == set(a.params)
    assert driver.cache.n_trials == N_TRIALS
    states = [t.state.name for t in driver.cache.study.trials]
    assert "RUNNING" not in states and "WAITING" not in states
    assert states.count("FAIL") == 2  # numbers 4 and 9
    if pruner == "none":
        assert "PRUNED" not in states
    best = driver.cache.best_trial_numbers()
    assert len(best) == 1
    finished = [r for r in driver.rows if r.state is TrialState.COMPLETE]
    assert driver.rows[best[0]].values == [min(r.values[0] for r in finished)]


@pytest.mark.parametrize("sampler", SAMPLERS)
class TestSamplerContract:
    """What the services rely on, for every sampler of the registry."""

    def test_a_rebuilt_cache_continues_where_the_first_stopped(self, sampler: str) -> None:
        spec = make_study_spec(sampler, "median")
        driver = Driver(spec)
        run_trials(driver, N_TRIALS)
        still_running = driver.ask()  # one trial in flight survives the rebuild too
        assert still_running is not None
        rebuilt = driver.rebuilt()
        assert rebuilt.n_trials == N_TRIALS + 1
        old, new = driver.cache.study.trials, rebuilt.study.trials
        assert [(t.number, t.state, t.params, t.values) for t in new] == [
            (t.number, t.state, t.params, t.values) for t in old
        ]
        assert [t.intermediate_values for t in new] == [t.intermediate_values for t in old]
        assert rebuilt.best_trial_numbers() == driver.cache.best_trial_numbers()
        # the first cache and the rebuilt one both hand out number 13 next
        nxt = rebuilt.ask()
        assert nxt is not None
        assert nxt.number == N_TRIALS + 1
        assert_in_space(spec, nxt.params)
        # the in-flight trial can still be finished on the rebuilt cache
        rebuilt.finish(still_running.number, TrialState.COMPLETE, [1.0])

    def test_a_rebuilt_cache_asks_what_the_first_would_have(self, sampler: str) -> None:
        if sampler == "gp":
            pytest.skip(
                "GPSampler warm-starts its kernel fit from the previous ask (_gprs_cache_list): "
                "a rebuilt cache fits from scratch, which is as valid but not identical"
            )
        spec = make_study_spec(sampler, "none")
        first, twin = Driver(spec), Driver(spec)
        run_trials(first, 6)
        run_trials(twin, 6)
        rebuilt = first.rebuilt()
        from_rebuilt, from_twin = rebuilt.ask(), twin.cache.ask()
        assert from_rebuilt is not None and from_twin is not None
        assert from_rebuilt.number == from_twin.number == 6
        assert from_rebuilt.params == from_twin.params

    @pytest.mark.parametrize("seed", [SEED, None])
    def test_sampling_ahead_changes_no_trial(self, sampler: str, seed: int | None) -> None:
        """The server works out the next sample ahead between requests (TPE does; for the
        others it is nothing): with it before every ask and every trial's end, a study asks
        what it asks without it. Unseeded, the random state is set alike on both."""
        spec = make_study_spec(sampler, "median", seed=seed)
        plain, ahead = Driver(spec), Driver(spec)
        if seed is None:
            for driver in (plain, ahead):
                _reseed(driver.cache.study.sampler, 5)

        def sample_ahead_first(method: Any) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                ahead.cache.sample_ahead()
                return method(*args, **kwargs)

            return call

        ahead.ask = sample_ahead_first(ahead.ask)  # type: ignore[method-assign]
        ahead.run = sample_ahead_first(ahead.run)  # type: ignore[method-assign]
        trials = [run_trials(driver, 20, batch=3) for driver in (plain, ahead)]
        assert [x.params for x in trials[0]] == [x.params for x in trials[1]]
        sampler_ = ahead.cache.study.sampler
        if sampler == "tpe":
            assert sampler_.taken_ahead > 0

    def test_the_same_seed_gives_the_same_trials(self, sampler: str) -> None:
        spec = make_study_spec(sampler, "none")
        a, b = Driver(spec), Driver(spec)
        first_a = [x.params for x in run_trials(a, 4, batch=1)]
        first_b = [x.params for x in run_trials(b, 4, batch=1)]
        assert first_a == first_b

    def test_another_seed_gives_other_first_params(self, sampler: str) -> None:
        if sampler == "qmc":
            pytest.skip("an unscrambled Sobol sequence does not depend on the seed")
        firsts = set()
        for seed in (1, 2, 3):
            asked = Driver(make_study_spec(sampler, "none", seed=seed)).ask()
            assert asked is not None
            firsts.add(json.dumps(asked.params, sort_keys=True))
        assert len(firsts) > 1

    def test_an_enqueued_trial_is_asked_first_with_its_params(self, sampler: str) -> None:
        spec = make_study_spec(sampler, "none")
        driver = Driver(spec)
        run_trials(driver, 2)
        # Optuna's grid needs every active parameter of an enqueued trial (the API checks it)
        fixed = (
            {"x": 0.5, "opt": "adam"} if sampler != "grid" else {"x": 0.5, "n": 2, "opt": "adam"}
        )
        waiting = TrialRecord(
            number=2,
            state=TrialState.WAITING,
            params={},
            distributions={},
            values=None,
            intermediate_values={},
            system_attrs={},
            fixed_params=_json(fixed),
        )
        driver.cache.sync(driver.study_attrs, [waiting], seq=3)
        assert driver.cache.has_waiting()
        asked = driver.cache.ask()
        assert asked is not None
        assert asked.was_waiting and asked.number == 2
        assert {k: asked.params[k] for k in fixed} == fixed
        assert "momentum" not in asked.params  # inactive for adam
        assert_in_space(spec, asked.params)
        assert not driver.cache.has_waiting()
        nxt = driver.cache.ask()
        assert nxt is not None and nxt.number == 3 and not nxt.was_waiting

    def test_a_waiting_retry_is_rebuilt_as_waiting(self, sampler: str) -> None:
        spec = make_study_spec(sampler, "none")
        driver = Driver(spec)
        asked = run_trials(driver, 1)[0]
        retry = TrialRecord(
            number=1,
            state=TrialState.WAITING,
            params={},
            distributions={},
            values=None,
            intermediate_values={},
            system_attrs={},
            fixed_params=_json(asked.params),
        )
        rebuilt = StudyCache(1, spec)
        rebuilt.sync(_json(driver.study_attrs), [*driver.records(), retry], seq=2)
        assert rebuilt.has_waiting()
        again = rebuilt.ask()
        assert again is not None and again.was_waiting
        assert again.params == asked.params


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2", "gp", "qmc"])
def test_two_objectives(sampler: str) -> None:
    spec = make_study_spec(sampler, "none", objectives=2)
    driver = Driver(spec)
    run_trials(driver, 8)
    front = driver.cache.best_trial_numbers()
    assert front
    complete = {r.number: r.values for r in driver.rows if r.state is TrialState.COMPLETE}
    assert set(front) <= set(complete)
    for a in front:  # nobody dominates a member of the front (minimize 0, maximize 1)
        for b, vb in complete.items():
            va = complete[a]
            dominated = vb[0] <= va[0] and vb[1] >= va[1] and vb != va
            assert not dominated, (a, b)


# -- grid ----------------------------------------------------------------------------------

FLAT_GRID: dict[str, Any] = {
    "x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25},
    "n": {"type": "int", "low": 2, "high": 8, "step": 3},
    "opt": {"type": "categorical", "choices": ["sgd", "adam", True]},
}


@pytest.mark.parametrize("seed", [None, 0, 5])
def test_grid_hands_out_every_point_once_then_none(seed: int | None) -> None:
    spec = make_study_spec("grid", "none", seed=seed, space=FLAT_GRID)
    driver = Driver(spec)
    expected = set(product([0.0, 0.25, 0.5, 0.75, 1.0], [2, 5, 8], ["sgd", "adam", True]))
    seen: list[tuple[Any, ...]] = []
    grid_ids: list[int] = []
    while (asked := driver.ask()) is not None:
        assert len(seen) < len(expected), "the grid handed out more points than it has"
        assert_in_space(spec, asked.params)
        seen.append((asked.params["x"], asked.params["n"], asked.params["opt"]))
        assert asked.grid_id is not None
        grid_ids.append(asked.grid_id)
        driver.run(asked)
    assert len(seen) == len(expected) == 45
    assert {json.dumps(p) for p in seen} == {json.dumps(p) for p in expected}
    assert sorted(grid_ids) == list(range(45))
    assert not driver.cache.can_create()
    assert driver.cache.ask() is None
    assert driver.rebuilt().ask() is None  # a rebuilt cache knows the grid is spent


def test_grid_with_conditional_params_ends_too() -> None:
    spec = make_study_spec("grid", "none")
    driver = Driver(spec)
    n_points = 5 * 4 * 3 * 4
    asked = run_trials(driver, n_points, batch=3)
    assert sorted(a.grid_id for a in asked) == list(range(n_points))
    for a in asked:
        assert_in_space(spec, a.params)
    assert driver.cache.ask() is None


def test_grid_counts_points_handed_out_before_a_rebuild() -> None:
    spec = make_study_spec("grid", "none", space=FLAT_GRID)
    driver = Driver(spec)
    first = run_trials(driver, 20)
    rebuilt = driver.rebuilt()
    rest: list[AskResult] = []
    while (asked := rebuilt.ask()) is not None:
        rest.append(asked)
        assert len(rest) <= 25
    ids = [a.grid_id for a in first + rest]
    assert sorted(ids) == list(range(45))


def test_grid_visits_both_ends_of_a_float_step_grid() -> None:
    """0.1 to 0.7 by 0.1 is seven points; float division must not lose the last one."""
    spec = make_study_spec(
        "grid", "none", space={"x": {"type": "float", "low": 0.1, "high": 0.7, "step": 0.1}}
    )
    driver = Driver(spec)
    values = []
    while (asked := driver.ask()) is not None:
        values.append(asked.params["x"])
        driver.cache.finish(asked.number, TrialState.COMPLETE, [0.0])
    assert sorted(values) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert all(math.isclose(v, round(v, 12)) for v in values)


@pytest.mark.parametrize("sampler", ["random", "tpe", "grid"])
def test_choices_of_different_types_are_all_handed_out_as_themselves(sampler: str) -> None:
    """1, "1" and False are three choices (1 and True would be one, and are refused)."""
    choices = [1, "1", False, 2.5]
    spec = make_study_spec(
        sampler, "none", space={"k": {"type": "categorical", "choices": choices}}
    )
    driver = Driver(spec)
    seen = set()
    for _ in range(4 if sampler == "grid" else 40):
        asked = driver.ask()
        assert asked is not None
        value = asked.params["k"]
        seen.add((type(value).__name__, value))
        driver.cache.finish(asked.number, TrialState.COMPLETE, [0.0])
    assert seen == {(type(c).__name__, c) for c in choices}


def test_tpe_and_hyperband_defaults_are_optunas() -> None:
    """A study that names TPE and Hyperband without options gets what plain Optuna would use.

    benchmarks/search_efficiency.py compares the service with plain Optuna's defaults, and a
    replay (RESULTS.md, "Search efficiency") found the same trials on both sides.
    """
    import optuna

    spec = StudySpec.model_validate(
        {
            "name": "defaults",
            "objectives": [{"name": "val_accuracy", "direction": "maximize"}],
            "search_space": {k: v for k, v in SPACE.items() if "when" not in v},
            "sampler": {"name": "tpe"},
            "pruner": {"name": "hyperband"},
            "training": {"max_epochs": 27},
        }
    )
    ours, theirs = build_sampler(spec), optuna.samplers.TPESampler()
    assert isinstance(ours, optuna.samplers.TPESampler)
    for attr in (
        "_n_startup_trials",
        "_n_ei_candidates",
        "_gamma",
        "_group",
        "_constant_liar",
        "_parzen_estimator_parameters",
        "_parzen_estimator_cls",
    ):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    # Optuna leaves multivariate to the study (on for one objective); we decide it up front.
    study = optuna.create_study(direction="maximize")
    assert ours._is_multivariate(study) and theirs._is_multivariate(study)

    pruner = build_pruner(spec)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert vars(pruner) == vars(optuna.pruners.HyperbandPruner(max_resource=27))


def test_a_sample_is_worked_out_ahead_only_where_answers_come_far_enough_apart() -> None:
    cache = StudyCache(1, make_study_spec("tpe"))
    assert not cache.answered(0.0)  # no gaps yet
    assert not any(cache.answered(0.001 * i) for i in range(1, 6))  # 1 ms apart: no
    # Before a sample was worked out ahead, the asks' times, but at least 2 ms: TPE's start-up
    # asks are random draws of microseconds, no guide to what its own samples cost.
    cache.ask_times.extend([0.0001] * 5)
    assert not any(cache.answered(0.5 + 0.005 * i) for i in range(1, 6))  # 5 ms apart: no
    assert [cache.answered(0.7 + 0.021 * i) for i in range(6)][-1]  # 21 ms: yes
    cache.ahead_times.append(0.004)
    assert not any(cache.answered(1 + 0.039 * i) for i in range(1, 6))  # under 10 x 4 ms
    assert [cache.answered(2 + 0.041 * i) for i in range(6)][-1]  # 41 ms apart: yes
    random_search = StudyCache(2, make_study_spec("random"))
    assert not any(random_search.answered(1.0 * i) for i in range(6))  # nothing to work out
    no_liar = make_study_spec("tpe").model_copy(deep=True)
    no_liar.sampler.options["constant_liar"] = False
    assert not any(StudyCache(3, no_liar).answered(1.0 * i) for i in range(6))


def _running_in(cache: StudyCache) -> int:
    return sum(t.state.name == "RUNNING" for t in cache.study.get_trials(deepcopy=False))


def test_the_running_count_follows_every_change_of_state() -> None:
    """``n_running`` (which a study's ``max_concurrent`` is checked against on the hot path)
    is kept up to date as trials are asked, reported, pruned, finished and synced."""
    driver = Driver(make_study_spec("random", "median"))
    cache = driver.cache
    asked = [driver.ask() for _ in range(4)]
    assert cache.n_running == _running_in(cache) == 4
    for a in asked[:3]:
        assert a is not None
        driver.run(a, fail=a.number == 1)  # complete, fail, complete or pruned
        assert cache.n_running == _running_in(cache)
    assert cache.n_running == 1
    # Another server finished trial 3 and started trial 4; trial 5 waits (a retry).
    finished = Row(**{**vars(driver.rows[3]), "state": TrialState.COMPLETE, "values": [1.0]})
    started = Row(4, TrialState.RUNNING, dict(asked[0].params), dict(asked[0].distributions), {})
    waiting = TrialRecord(5, TrialState.WAITING, {}, {}, None, {}, {}, _json(asked[0].params))
    cache.sync(driver.study_attrs, [finished.record(), started.record(), waiting], seq=9)
    assert cache.n_running == _running_in(cache) == 1
    assert cache.ask() is not None  # the waiting trial runs
    assert cache.n_running == _running_in(cache) == 2
    rebuilt = StudyCache(1, driver.spec)
    records = [*driver.records()[:3], finished.record(), started.record()]
    rebuilt.sync(_json(driver.study_attrs), records, seq=9)
    assert rebuilt.n_running == _running_in(rebuilt) == 1


def test_tpe_in_a_study_cache_skips_the_trials_that_had_finished() -> None:
    """An ask of the cache's TPE reads only the trials past those finished at an earlier ask
    (its fast path on Optuna's in-memory storage, which the cache's storage extends), in a
    cache that ran its trials and in one rebuilt from their rows."""
    driver = Driver(make_study_spec("tpe"))
    run_trials(driver, 20, batch=1)
    sampler = driver.cache.study.sampler
    assert isinstance(sampler, RememberingTPESampler)
    assert sampler._table(driver.cache.study).head == 19  # finished at the 20th trial's ask
    rebuilt = driver.rebuilt()
    assert rebuilt.ask() is not None
    assert rebuilt.study.sampler._table(rebuilt.study).head == 20
