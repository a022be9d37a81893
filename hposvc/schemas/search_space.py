"""Search-space parameters of a study spec: float, int, categorical, optionally conditional."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

Choice = str | bool | int | float
PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"
MAX_PARAMS = 100
MAX_CHOICES = 1000


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: dict[str, list[Choice]] | None = Field(
        default=None,
        description="Active only when the named categorical parent takes one of these values.",
    )

    @field_validator("when")
    @classmethod
    def _one_parent(cls, when: dict[str, list[Choice]] | None) -> dict[str, list[Choice]] | None:
        if when is None:
            return None
        if len(when) != 1:
            raise ValueError("when names exactly one parent parameter")
        ((parent, values),) = when.items()
        if not values:
            raise ValueError(f"when.{parent} needs at least one value")
        return when

    @property
    def parent(self) -> tuple[str, list[Choice]] | None:
        return next(iter(self.when.items())) if self.when else None


def same_choice(a: object, b: object) -> bool:
    """Equal as choices: True is not 1, "1" is not 1; 1 and 1.0 are the same number."""
    return (
        a == b
        and isinstance(a, bool) == isinstance(b, bool)
        and isinstance(a, str) == isinstance(b, str)
    )


def _finite(value: float, name: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return value


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _finite(self.low, "low")
        _finite(self.high, "high")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("low must be > 0 when log is true")
        if self.step is not None:
            _finite(self.step, "step")
            if self.step <= 0:
                raise ValueError("step must be > 0")
            if self.log:
                raise ValueError("step and log cannot be used together")
        return self


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.step < 1:
            raise ValueError("step must be >= 1")
        if self.log and self.low < 1:
            raise ValueError("low must be >= 1 when log is true")
        if self.log and self.step != 1:
            raise ValueError("step must be 1 when log is true")
        return self


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Choice] = Field(max_length=MAX_CHOICES)

    @field_validator("choices")
    @classmethod
    def _check_choices(cls, choices: list[Choice]) -> list[Choice]:
        if not choices:
            raise ValueError("choices must not be empty")
        for i, c in enumerate(choices):
            if any(c == d for d in choices[:i]):
                # Optuna maps choices by ==, so 1, 1.0 and true would be one choice.
                raise ValueError(f"choices must be unique ({c!r} repeats an equal choice)")
        for c in choices:
            if isinstance(c, float):
                _finite(c, "each choice")
        return choices


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SearchSpace(RootModel[dict[str, Param]]):
    """Parameter name -> definition. Conditional parameters follow their parent."""

    @field_validator("root")
    @classmethod
    def _check_space(cls, space: dict[str, Param]) -> dict[str, Param]:
        if not space:
            raise ValueError("search_space must define at least one parameter")
        if len(space) > MAX_PARAMS:
            raise ValueError(f"search_space may define at most {MAX_PARAMS} parameters")

        for name, param in space.items():
            if not re.match(PARAM_NAME, name):
                raise ValueError(f"{name!r}: parameter names are letters, digits, _ . -")
            if param.parent is None:
                continue
            parent, values = param.parent
            parent_param = space.get(parent)
            if parent_param is None:
                raise ValueError(f"{name}.when: unknown parent parameter {parent!r}")
            if not isinstance(parent_param, CategoricalParam):
                raise ValueError(f"{name}.when: parent {parent!r} must be categorical")
            missing = [
                v for v in values if not any(same_choice(v, c) for c in parent_param.choices)
            ]
            if missing:
                raise ValueError(f"{name}.when: {missing} are not choices of {parent!r}")
        order_params(space)  # raises on cycles
        return space

    def ordered(self) -> list[tuple[str, Param]]:
        return order_params(self.root)


def order_params(space: dict[str, Param]) -> list[tuple[str, Param]]:
    """Parents before children, otherwise in declaration order.

    Raises:
        ValueError: when conditions form a cycle.
    """
    done: dict[str, Param] = {}
    pending = list(space.items())
    while pending:
        rest = []
        for name, param in pending:
            if param.parent is None or param.parent[0] in done:
                done[name] = param
            else:
                rest.append((name, param))
        if len(rest) == len(pending):
            names = ", ".join(n for n, _ in rest)
            raise ValueError(f"conditions form a cycle between {names}")
        pending = rest
    return list(done.items())


def is_active(param: Param, params: dict[str, Choice]) -> bool:
    """Whether a parameter applies given the values chosen for its parents so far."""
    if param.parent is None:
        return True
    parent, values = param.parent
    return parent in params and any(same_choice(params[parent], v) for v in values)


def contains(param: Param, value: object) -> bool:
    """Whether ``value`` is a legal value of ``param`` (used for enqueued trials)."""
    if isinstance(param, CategoricalParam):
        return any(same_choice(value, c) for c in param.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(param, IntParam):
        if isinstance(value, float) and not value.is_integer():
            return False
        v = int(value)
        return param.low <= v <= param.high and (v - param.low) % param.step == 0
    if not math.isfinite(value) or not param.low <= value <= param.high:
        return False
    if param.step is not None:
        k = (value - param.low) / param.step
        return abs(k - round(k)) < 1e-8
    return True
