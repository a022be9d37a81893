"""TPE's acquisition function: optuna's mixture log density, laid out for numpy.

TPE scores its candidates with the log density of two Parzen estimators, each a mixture of one
kernel per trial. For the continuous parameters optuna computes it on arrays shaped
(candidates, kernels, parameters): with 24 candidates, 1,000 trials and 2 parameters that is
48,000 values whose last axis holds 2, and numpy's broadcasting and its sum over that axis
step through it two values at a time. At 1,000 trials the sum alone took 0.36 ms and the
standardisation 0.37 ms of a 5 ms ask. ``log_pdf`` computes each parameter's
(candidates, kernels) block on its own, with the kernels contiguous, and adds the blocks in
the order numpy's sum adds the last axis, so the floats are optuna's, bit for bit
(``tests/unit/test_mixture_log_pdf.py``; with 8 continuous parameters or more numpy's sum
switches to pairwise summation, and optuna's own function is used).

It follows ``_MixtureOfProductDistribution.log_pdf`` of optuna 5.0.0 (the version
pyproject.toml pins): categorical and discrete parameters are added exactly as there.
"""

from __future__ import annotations

import numpy as np
from optuna.samplers._tpe import _truncnorm
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.probability_distributions import (
    _BatchedCategoricalDistributions,
    _log_gauss_mass_unique,
    _MixtureOfProductDistribution,
    _unique_inverse_2d,
)

# numpy adds up to 7 values along an axis one after the other, from the first; 8 or more
# pairwise, in blocks.
_SEQUENTIAL_SUM_MAX = 7


def acquisition(
    samples: dict[str, np.ndarray], below: _ParzenEstimator, above: _ParzenEstimator
) -> np.ndarray:
    """``TPESampler._compute_acquisition_func``: log l(x) - log g(x) for each candidate."""
    return log_pdf(below, samples) - log_pdf(above, samples)


def log_pdf(estimator: _ParzenEstimator, samples: dict[str, np.ndarray]) -> np.ndarray:
    """``estimator.log_pdf(samples)``, the same floats."""
    mixture: _MixtureOfProductDistribution = estimator._mixture_distribution
    x = estimator._transform(samples)
    continuous = [
        d
        for d in mixture.distributions
        if not isinstance(d, _BatchedCategoricalDistributions) and d.step == 0.0
    ]
    if len(continuous) > _SEQUENTIAL_SUM_MAX:
        return mixture.log_pdf(x)

    weighted_log_pdf = np.zeros((len(x), len(mixture.weights)), dtype=np.float64)
    x_cont = []
    for i, d in enumerate(mixture.distributions):
        if isinstance(d, _BatchedCategoricalDistributions):
            xi = x[:, i, np.newaxis, np.newaxis].astype(np.int64)
            weighted_log_pdf += np.log(np.take_along_axis(d.weights[np.newaxis], xi, axis=-1))[
                ..., 0
            ]
            continue
        is_log = d.is_log
        if (step := d.step) == 0.0:
            x_cont.append(np.log(x[:, i]) if is_log else x[:, i])
        else:
            xi_uniq, xi_inv = np.unique(x[:, i], return_inverse=True)
            mu_uniq, sigma_uniq, mu_sigma_inv = _unique_inverse_2d(d.mu, d.sigma)
            left = np.log(xi_uniq - step / 2) if is_log else (xi_uniq - step / 2)
            right = np.log(xi_uniq + step / 2) if is_log else (xi_uniq + step / 2)
            weighted_log_pdf += _log_gauss_mass_unique(
                (left[:, np.newaxis] - mu_uniq) / sigma_uniq,
                (right[:, np.newaxis] - mu_uniq) / sigma_uniq,
            )[np.ix_(xi_inv, mu_sigma_inv)]
            weighted_log_pdf -= _truncnorm._log_gauss_mass(
                (d.adapted_low - mu_uniq) / sigma_uniq, (d.adapted_high - mu_uniq) / sigma_uniq
            )[mu_sigma_inv]

    if x_cont:
        weighted_log_pdf += _continuous_log_pdf(continuous, x_cont)

    weighted_log_pdf += np.log(mixture.weights[np.newaxis])
    max_ = weighted_log_pdf.max(axis=1)
    # We need to avoid (-inf) - (-inf) when the probability is zero.
    max_[np.isneginf(max_)] = 0
    with np.errstate(divide="ignore"):  # Suppress warning in log(0).
        return np.log(np.exp(weighted_log_pdf - max_[:, None]).sum(axis=1)) + max_


def _continuous_log_pdf(distributions: list, x_cont: list[np.ndarray]) -> np.ndarray:
    """``_truncnorm.logpdf(...).sum(axis=-1)`` over the continuous parameters, one
    (candidates, kernels) block per parameter."""
    mus = np.asarray([d.mu for d in distributions]).T
    sigmas = np.asarray([d.sigma for d in distributions]).T
    lows = np.asarray([d.adapted_low for d in distributions])
    highs = np.asarray([d.adapted_high for d in distributions])
    a = (lows - mus) / sigmas
    b = (highs - mus) / sigmas
    # On the whole (kernels, parameters) arrays, as optuna calls it: how many values reach
    # optuna's erf decides which of its two methods computes them.
    log_mass = _truncnorm._log_gauss_mass(a, b)
    log_scale = np.log(sigmas)
    total = None
    for j, xj in enumerate(x_cont):
        mu, sigma, aj, bj = mus[:, j], sigmas[:, j], a[:, j], b[:, j]
        z = (xj[:, np.newaxis] - mu) / sigma
        out = _truncnorm._norm_logpdf(z) - log_mass[:, j] - log_scale[:, j]
        # np.select([a == b, (z < a) | (z > b)], [nan, -inf], default=out): the first that holds
        outside = (z < aj) | (z > bj)
        if outside.any():
            out[outside] = -np.inf
        empty = aj == bj
        if empty.any():
            out[:, empty] = np.nan
        total = out if total is None else total + out
    assert total is not None
    return total
