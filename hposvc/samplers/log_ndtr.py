"""The log of the standard normal CDF for TPE, as optuna computes it but without a Python call
per element.

TPE's Parzen estimators take the log of a Gaussian's mass over intervals through optuna's
``_truncnorm._log_ndtr``, which calls a Python function (behind two ``lru_cache`` layers) for
every element. For a discrete parameter (an int, or a float with a step) that is one call per
candidate and kernel, every ask: at 1,000 trials about two thirds of an ask with one int
parameter. ``log_ndtr`` does the same float operations in the same order on whole arrays
(numpy's IEEE arithmetic, and ``math.erf``, ``math.erfc`` and ``math.log`` applied in C), so
it returns the same floats, bit for bit (NaN, infinities and values past -1e150 still go
through optuna's function). ``install`` makes optuna use it (for every TPE sampler in the
process: the values do not change, only the time they take). ``tests/unit/test_log_ndtr.py``
compares it with optuna's on millions of values.

``install`` also gives optuna's normal CDF (``_truncnorm._ndtr``, which TPE uses for every
kernel's mass, in sampling and in scoring) an ``erf`` that feeds ``math.erf`` from a list
instead of a list comprehension over numpy scalars: the same floats, about a third sooner.
Arrays of 2,000 values or more still go to optuna's own (a polynomial on whole arrays, which
gives other floats). And ``log_gauss_mass`` stands in for optuna's log of a Gaussian's mass
over intervals, with one ``log_ndtr`` call where optuna makes four: the same floats
(``tests/unit/test_log_ndtr.py``), an ask on a space with int parameters about 15% sooner.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from optuna.samplers._tpe import _truncnorm
from optuna.samplers._tpe._erf import erf as _optunas_erf

_SQRT2 = 2**0.5
_erf = np.frompyfunc(math.erf, 1, 1)
_erfc = np.frompyfunc(math.erfc, 1, 1)
_log = np.frompyfunc(math.log, 1, 1)
_pow = np.frompyfunc(math.pow, 2, 1)
# optuna's own, before ``install``: the per-element function serves the values this module
# leaves to it; the array function is what tests/unit/test_log_ndtr.py compares against.
_optunas_log_ndtr = _truncnorm._log_ndtr
_optunas_log_ndtr_single = _truncnorm._log_ndtr_single
_optunas_log_gauss_mass = _truncnorm._log_gauss_mass
_ERF_ON_ARRAYS_FROM = 2000  # optuna's erf: math.erf per element below this size


def _ndtr(a: np.ndarray) -> np.ndarray:
    """optuna's ``_ndtr_single`` on each element."""
    x = a / _SQRT2
    low = x < -1 / _SQRT2
    high = x >= 1 / _SQRT2
    y = np.empty(x.shape)
    middle = ~(low | high)
    if low.any():
        y[low] = 0.5 * _erfc(-x[low]).astype(float)
    if middle.any():
        y[middle] = 0.5 + 0.5 * _erf(x[middle]).astype(float)
    if high.any():
        y[high] = 1.0 - 0.5 * _erfc(x[high]).astype(float)
    return y


def _log_ndtr_left_tail(a: np.ndarray) -> np.ndarray:
    """optuna's asymptotic series for ``a <= -20`` on each element: every element runs the
    same steps as in optuna's loop, and stops when its own terms stop changing the sum.

    Step i is the same for every element still summing, so they step together, and an
    element leaves the arrays once its sum has stopped changing.
    """
    a2 = _pow(a, 2.0).astype(float)  # a**2, as Python computes it (libm's pow)
    log_lhs = -0.5 * a2 - _log(-a).astype(float) - 0.5 * math.log(2 * math.pi)
    total = np.empty(a.shape)
    left = np.arange(a.size)  # the elements still summing
    right_hand_side = np.ones(a.size)
    numerator = np.ones(a.size)
    denom_factor = np.ones(a.size)
    denom_cons = 1 / a2.ravel()
    sign, i = 1, 0
    while left.size:
        i += 1
        last_total = right_hand_side
        sign = -sign
        denom_factor = denom_factor * denom_cons
        numerator = numerator * (2 * i - 1)
        right_hand_side = right_hand_side + sign * numerator * denom_factor
        going_on = np.abs(last_total - right_hand_side) > sys.float_info.epsilon
        if not going_on.all():
            done = ~going_on
            total.flat[left[done]] = right_hand_side[done]
            left, right_hand_side = left[going_on], right_hand_side[going_on]
            numerator, denom_factor = numerator[going_on], denom_factor[going_on]
            denom_cons = denom_cons[going_on]
    return log_lhs + _log(total).astype(float)


def log_ndtr(a: np.ndarray) -> np.ndarray:
    """optuna's ``_log_ndtr_single`` on each element (optuna's ``_log_ndtr``)."""
    a = np.asarray(a, dtype=float)
    upper = a > 6
    middle = ~upper & (a > -20)
    tail = ~(upper | middle) & (a > -1e150)  # a**2 would overflow past -1.3e154
    odd = ~(upper | middle | tail)  # NaN, -inf, and values beyond
    out = np.empty(a.shape)
    if upper.any():
        out[upper] = -_ndtr(-a[upper])
    if middle.any():
        out[middle] = _log(_ndtr(a[middle])).astype(float)
    if tail.any():
        out[tail] = _log_ndtr_left_tail(a[tail])
    if odd.any():
        out[odd] = [_optunas_log_ndtr_single(value) for value in a[odd].tolist()]
    return out


def erf(x: np.ndarray) -> np.ndarray:
    """optuna's ``_erf.erf``: ``math.erf`` on each element below 2,000 of them."""
    if x.size < _ERF_ON_ARRAYS_FROM:
        return np.fromiter(map(math.erf, x.ravel().tolist()), float, x.size).reshape(x.shape)
    return _optunas_erf(x)


def log_gauss_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """optuna's ``_truncnorm._log_gauss_mass``: the log of a Gaussian's mass over [a, b].

    optuna works out each of its three cases on its own, the left and right ones with two
    ``_log_ndtr`` calls each, in a complex array. Here the left and right cases' log CDFs are
    one ``log_ndtr`` call (it works element by element), in a float array; the central case
    calls optuna's ``_ndtr`` as optuna does, as many values at a time (its ``erf`` switches
    method at 2,000 values).
    """
    case_left = b <= 0
    case_right = a > 0
    case_central = ~(case_left | case_right)
    out = np.full(a.shape, np.nan)
    a_left, b_left = a[case_left], b[case_left]
    a_right, b_right = a[case_right], b[case_right]
    if a_left.size or a_right.size:
        # the right case is the left one of [-b, -a]: log(Phi(p) - Phi(q)), p the upper end
        p = np.concatenate([b_left, -a_right])
        logs = log_ndtr(np.concatenate([p, a_left, -b_right]))
        log_p, log_q = logs[: p.size], logs[p.size :]
        mass = log_p + np.log1p(-np.exp(log_q - log_p))  # optuna's _log_diff
        out[case_left] = mass[: a_left.size]
        out[case_right] = mass[a_left.size :]
    if (a_central := a[case_central]).size:
        out[case_central] = np.log1p(
            -_truncnorm._ndtr(a_central) - _truncnorm._ndtr(-b[case_central])
        )
    return out


def install() -> None:
    """Have optuna's truncated normal use ``log_ndtr``, ``erf`` and ``log_gauss_mass``."""
    _truncnorm._log_ndtr = log_ndtr
    _truncnorm.erf = erf
    _truncnorm._log_gauss_mass = log_gauss_mass
