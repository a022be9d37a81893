"""Spec parameters as Optuna distributions, and suggesting them on a trial."""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

from hposvc.schemas.search_space import CategoricalParam, FloatParam, IntParam, Param


def to_distribution(param: Param) -> BaseDistribution:
    if isinstance(param, FloatParam):
        return FloatDistribution(param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntParam):
        return IntDistribution(param.low, param.high, log=param.log, step=param.step)
    return CategoricalDistribution(param.choices)


def suggest(trial: Trial, name: str, param: Param) -> Any:
    if isinstance(param, FloatParam):
        return trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntParam):
        return trial.suggest_int(name, param.low, param.high, log=param.log, step=param.step)
    assert isinstance(param, CategoricalParam)
    return trial.suggest_categorical(name, param.choices)


def grid_values(name: str, param: Param, *, max_points: int) -> list[Any]:
    """Every value a grid search visits for one parameter.

    Raises:
        ValueError: a float without ``step``, or a grid too large to enumerate.
    """
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    if isinstance(param, FloatParam) and param.step is None:
        raise ValueError(f"grid search needs a step on float parameter {name!r}")
    # A small tolerance keeps the last point: (0.7 - 0.1) / 0.1 is 5.999... in floats.
    n = int(math.floor((param.high - param.low) / param.step + 1e-9)) + 1  # type: ignore[operator]
    if n > max_points:
        raise ValueError(f"parameter {name!r} has {n} grid values, more than {max_points}")
    if isinstance(param, IntParam):
        return [param.low + i * param.step for i in range(n)]
    return [round(param.low + i * param.step, 12) for i in range(n)]  # type: ignore[operator]
