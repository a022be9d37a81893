"""hposvc/samplers/mixture_log_pdf.py scores TPE's candidates with optuna's floats, bit for bit,
whatever the mix of parameters."""

from __future__ import annotations

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import default_weights

from hposvc.samplers import log_ndtr
from hposvc.samplers.mixture_log_pdf import log_pdf

_KINDS = [
    FloatDistribution(-5.0, 5.0),
    FloatDistribution(1e-5, 1e-1, log=True),
    FloatDistribution(0.0, 1.0, step=0.1),
    IntDistribution(1, 9, step=2),
    IntDistribution(1, 1024, log=True),
    CategoricalDistribution(["a", "b", "c"]),
    FloatDistribution(2.0, 2.0),  # one value: every kernel's interval is empty
]


def _space(rng: np.random.Generator, n_params: int, kinds: list[int]) -> dict:
    return {f"p{i}": _KINDS[int(rng.choice(kinds))] for i in range(n_params)}


def _observations(rng: np.random.Generator, space: dict, n: int) -> dict[str, np.ndarray]:
    columns = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            columns[name] = rng.integers(0, len(dist.choices), n)
            continue
        if dist.log:
            values = np.exp(rng.uniform(np.log(dist.low), np.log(dist.high), n))
        else:
            values = rng.uniform(dist.low, dist.high, n)
        if dist.step is not None:
            values = np.clip(
                dist.low + np.round((values - dist.low) / dist.step) * dist.step,
                dist.low,
                dist.high,
            )
        columns[name] = values.astype(float)
    return columns


def _estimator(rng: np.random.Generator, space: dict, n: int) -> _ParzenEstimator:
    parameters = _ParzenEstimatorParameters(
        prior_weight=1.0,
        consider_magic_clip=bool(rng.random() < 0.8),
        consider_endpoints=bool(rng.random() < 0.3),
        weights=default_weights,
        multivariate=True,
    )
    return _ParzenEstimator(_observations(rng, space, n), space, parameters)


def _same_bits(mine: np.ndarray, theirs: np.ndarray) -> None:
    assert mine.shape == theirs.shape
    assert mine.dtype == theirs.dtype == np.float64
    same = mine.view(np.int64) == theirs.view(np.int64)
    assert same.all(), (mine[~same][:5], theirs[~same][:5])


@pytest.mark.parametrize(
    ("kinds", "n_params"),
    [
        ([0], 2),  # the dispatch benchmark's space
        ([0, 1], 3),
        ([0, 1, 2, 3, 4, 5], 4),  # every kind, continuous with discrete and categorical
        ([2, 3, 4, 5], 3),  # no continuous parameter
        ([0, 1], 7),  # the most that numpy sums one after the other
        ([0, 1], 9),  # pairwise: optuna's own function
        ([0, 6], 2),
    ],
)
def test_it_gives_optunas_floats(kinds: list[int], n_params: int) -> None:
    rng = np.random.default_rng(n_params * 100 + len(kinds))
    sampler_rng = np.random.RandomState(0)
    log_ndtr.install()
    for n_trials in (0, 1, 3, 30, 400, 1200):
        space = _space(rng, n_params, kinds)
        below = _estimator(rng, space, min(n_trials, 25))
        above = _estimator(rng, space, n_trials)
        with np.errstate(invalid="ignore"):  # the one-value parameter's kernels
            samples = below.sample(sampler_rng, 24)
        # candidates on the bounds, and past them (a density of 0: -inf)
        for name, dist in space.items():
            if isinstance(dist, FloatDistribution) and dist.step is None:
                samples[name][:3] = [dist.low, dist.high, np.nextafter(dist.high, np.inf)]
        with np.errstate(divide="ignore", invalid="ignore"):
            for estimator in (below, above):
                _same_bits(log_pdf(estimator, samples), estimator.log_pdf(samples))
