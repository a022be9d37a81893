"""hposvc/samplers/log_ndtr.py returns optuna's log normal CDF bit for bit, and TPE samples the
same with it as with optuna's own."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.samplers._tpe import _truncnorm

from hposvc.samplers import log_ndtr as ours

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _values() -> np.ndarray:
    rng = np.random.default_rng(0)
    edges = np.array([6.0, -20.0, 1.0, -1.0, 0.0, -0.0, 2**0.5, -(2**0.5)])
    near = np.concatenate([np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf), edges])
    special = np.array([np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e300, -1e150, -1e153, 37.0])
    return np.concatenate(
        [
            rng.uniform(-40, 40, 400_000),
            rng.normal(0, 3, 400_000),
            rng.uniform(-1.5, 1.5, 200_000),
            rng.uniform(5.5, 6.5, 50_000),
            rng.uniform(-20.5, -19.5, 50_000),
            -np.exp(rng.uniform(np.log(20), np.log(1e150), 200_000)),  # the left tail's series
            near,
            special,
        ]
    )


def test_it_returns_optunas_floats_bit_for_bit() -> None:
    values = _values()
    with np.errstate(invalid="ignore"):  # optuna's series warns on NaN
        theirs = ours._optunas_log_ndtr(values)
    mine = ours.log_ndtr(values)
    assert mine.dtype == theirs.dtype == np.float64
    same = mine.view(np.int64) == theirs.view(np.int64)
    assert same.all(), values[~same][:5]


@pytest.mark.parametrize("shape", [(0,), (3, 4), (1,)])
def test_it_keeps_the_shape(shape: tuple[int, ...]) -> None:
    values = np.linspace(-25, 8, int(np.prod(shape))).reshape(shape)
    np.testing.assert_array_equal(ours.log_ndtr(values), ours._optunas_log_ndtr(values))
    assert ours.log_ndtr(values).shape == shape


def _tpe_params(seed: int) -> list[dict]:
    def objective(trial: optuna.Trial) -> float:
        units = trial.suggest_int("units", 16, 512, log=True)
        layers = trial.suggest_int("layers", 1, 6)
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        drop = trial.suggest_float("dropout", 0.0, 0.5, step=0.05)
        return abs(units - 100) / 100 + layers / 3 + abs(np.log10(lr) + 3) + drop

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))
    study.optimize(objective, n_trials=60)
    return [t.params for t in study.trials]


def test_tpe_samples_the_same_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Int and stepped parameters, whose kernels' masses go through the log CDF."""
    monkeypatch.setattr(_truncnorm, "_log_ndtr", ours._optunas_log_ndtr)
    theirs = [_tpe_params(seed) for seed in range(3)]
    monkeypatch.setattr(_truncnorm, "_log_ndtr", ours.log_ndtr)
    assert [_tpe_params(seed) for seed in range(3)] == theirs


@pytest.mark.parametrize("size", [0, 1, 7, 1999, 2000, 5000])
def test_its_erf_returns_optunas_floats(size: int) -> None:
    rng = np.random.default_rng(size)
    values = np.concatenate([rng.normal(0, 3, size), [0.0, -0.0, np.inf, -np.inf, np.nan]])[:size]
    for shaped in (values, values.reshape(-1, 1)):
        mine, theirs = ours.erf(shaped), ours._optunas_erf(shaped)
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype == np.float64
        assert (mine.view(np.int64) == theirs.view(np.int64)).all()


def _intervals(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Intervals left of 0, right of it, around it, inverted, empty; NaN and infinities."""
    a = np.concatenate([rng.uniform(-45, 45, n), rng.normal(0, 2, n)])
    widths = [rng.exponential(3, n), -rng.exponential(1, n // 10), np.zeros(n - n // 10)]
    b = a + np.concatenate(widths)
    # as many intervals around 0: how many values optuna's central case hands its erf at once
    # decides which of erf's two methods computes them
    a = np.concatenate([a, -rng.uniform(0, 3, n)])
    b = np.concatenate([b, rng.uniform(1e-3, 3, n)])
    special_a = [np.nan, -np.inf, 0.0, -0.0, 1.0, -np.inf, 3.0, 2.0]
    special_b = [1.0, np.inf, 0.0, np.nan, np.inf, -5.0, -np.inf, 7.0]
    return np.concatenate([a, special_a]), np.concatenate([b, special_b])


@pytest.mark.parametrize("n", [0, 1, 50, 999, 1000, 3000])  # central cases below 2,000 and past
def test_its_log_gauss_mass_returns_optunas_floats(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _intervals(np.random.default_rng(n), n)
    for shape in ((a.size,), (a.size // 2, 2) if a.size % 2 == 0 else (a.size,)):
        aa, bb = a.reshape(shape), b.reshape(shape)
        with monkeypatch.context() as optunas, np.errstate(all="ignore"):
            optunas.setattr(_truncnorm, "_log_ndtr", ours._optunas_log_ndtr)
            optunas.setattr(_truncnorm, "erf", ours._optunas_erf)
            theirs = ours._optunas_log_gauss_mass(aa, bb)
        with np.errstate(all="ignore"):
            mine = ours.log_gauss_mass(aa, bb)
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype == np.float64
        assert (mine.view(np.int64) == theirs.view(np.int64)).all()
