"""hposvc/schemas/search_space.py: validation, parent-first order, is_active, contains."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from hposvc.schemas.search_space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
    contains,
    is_active,
    order_params,
)

PARAM = TypeAdapter(Param)


def _space(**params: dict[str, Any]) -> SearchSpace:
    return SearchSpace.model_validate(params)


def _param(**fields: Any) -> Param:
    return PARAM.validate_python(fields)


def _cat(*choices: Any, when: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    return {"type": "categorical", "choices": list(choices), "when": when}


def _float(low: float = 0.0, high: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, **extra}


# -- order ---------------------------------------------------------------------------------


def test_unconditional_params_keep_declaration_order() -> None:
    space = _space(b=_float(), a=_float(), c=_cat("x", "y"))
    assert [name for name, _ in space.ordered()] == ["b", "a", "c"]


def test_parents_come_before_their_children() -> None:
    space = _space(
        lr_decay=_float(when={"schedule": ["step"]}),
        schedule=_cat("none", "step", when={"optimizer": ["sgd"]}),
        width=_float(),
        optimizer=_cat("sgd", "adam"),
        momentum=_float(when={"optimizer": ["sgd"]}),
    )
    order = [name for name, _ in space.ordered()]
    assert sorted(order) == sorted(space.root)
    for child, parent in [
        ("lr_decay", "schedule"),
        ("schedule", "optimizer"),
        ("momentum", "optimizer"),
    ]:
        assert order.index(parent) < order.index(child)
    # those without a parent keep their declaration order
    assert order[:2] == ["width", "optimizer"]


def test_ordered_returns_the_params_themselves() -> None:
    space = _space(child=_float(when={"p": ["a"]}), p=_cat("a", "b"))
    ordered = dict(space.ordered())
    assert ordered["child"] is space.root["child"]
    assert isinstance(ordered["p"], CategoricalParam)


def test_a_cycle_is_rejected() -> None:
    with pytest.raises(ValidationError, match="cycle"):
        _space(a=_cat("x", when={"b": ["y"]}), b=_cat("y", when={"a": ["x"]}))


def test_a_longer_cycle_is_rejected() -> None:
    with pytest.raises(ValidationError, match="cycle"):
        _space(
            a=_cat("x", when={"c": ["z"]}),
            b=_cat("y", when={"a": ["x"]}),
            c=_cat("z", when={"b": ["y"]}),
            free=_float(),
        )


def test_a_param_conditioned_on_itself_is_a_cycle() -> None:
    with pytest.raises(ValidationError, match="cycle"):
        _space(a=_cat("x", "y", when={"a": ["x"]}))


def test_order_params_raises_on_a_cycle_naming_its_members() -> None:
    a = _param(**_cat("x", when={"b": ["y"]}))
    b = _param(**_cat("y", when={"a": ["x"]}))
    with pytest.raises(ValueError, match="cycle") as err:
        order_params({"free": _param(**_float()), "a": a, "b": b})
    assert "a" in str(err.value) and "b" in str(err.value)
    assert "free" not in str(err.value)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (_float(2.0, 1.0), "must not exceed"),
        ({"type": "int", "low": 3, "high": 2}, "must not exceed"),
        (_float(0.0, 1.0, log=True), "log"),
        (_float(-1.0, 1.0, log=True), "log"),
        ({"type": "int", "low": 0, "high": 4, "log": True}, "log"),
        (_float(0.0, 1.0, step=0.0), "step"),
        (_float(0.0, 1.0, step=-0.5), "step"),
        (_float(0.1, 1.0, step=0.1, log=True), "step"),
        ({"type": "int", "low": 0, "high": 4, "step": 0}, "step"),
        ({"type": "int", "low": 1, "high": 8, "step": 2, "log": True}, "step"),
        (_float(0.0, math.inf), "finite"),
        (_float(math.nan, 1.0), "finite"),
        (_cat(), "empty"),
        (_cat("a", "a"), "unique"),
        (_cat(1.5, 1.5), "unique"),
        (_cat(math.nan), "finite"),
        ({"type": "float", "low": 0.0, "high": 1.0, "bogus": 1}, "Extra"),
        ({"type": "complex", "low": 0, "high": 1}, "tag"),
    ],
)
def test_bad_params_are_rejected(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _param(**fields)


def test_choices_of_different_types_are_distinct() -> None:
    param = _param(**_cat(1, "1", 1.5, False))
    assert param.choices == [1, "1", 1.5, False]
    assert [type(c) for c in param.choices] == [int, str, float, bool]


@pytest.mark.parametrize("choices", [(1, True), (0, False), (1, 1.0), (2.0, 2)])
def test_choices_that_python_and_optuna_take_as_equal_are_refused(choices: tuple) -> None:
    """Optuna maps choices by ==, so 1, 1.0 and True would be one choice: refuse them."""
    with pytest.raises(ValidationError, match="unique"):
        _param(**_cat(*choices))


def test_low_equal_to_high_is_allowed() -> None:
    assert _param(**_float(1.0, 1.0)).low == 1.0
    assert _param(type="int", low=3, high=3).high == 3


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"ghost": ["a"]}, "unknown parent"),
        ({"n": [1]}, "categorical"),
        ({"p": ["c"]}, "not choices"),
        ({"p": []}, "at least one"),
        ({"p": ["a"], "q": ["b"]}, "exactly one"),
    ],
)
def test_bad_conditions_are_rejected(when: dict[str, list[Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _space(
            p=_cat("a", "b"),
            q=_cat("b"),
            n={"type": "int", "low": 0, "high": 3},
            child=_float(when=when),
        )


@pytest.mark.parametrize(
    ("choices", "when_values"),
    [([1, 2], [True]), ([True, False], [1]), ([0, 1], [False])],
)
def test_a_condition_value_of_another_type_is_not_a_choice(
    choices: list[Any], when_values: list[Any]
) -> None:
    """contains() tells 1 from True; the parent check must agree."""
    with pytest.raises(ValidationError, match="not choices"):
        _space(p=_cat(*choices), child=_float(when={"p": when_values}))


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "at least one"),
        ({"1abc": _float()}, "parameter names"),
        ({"a b": _float()}, "parameter names"),
        ({f"p{i}": _float() for i in range(101)}, "at most"),
    ],
)
def test_bad_spaces_are_rejected(space: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SearchSpace.model_validate(space)


# -- is_active -----------------------------------------------------------------------------


def test_a_param_without_parent_is_always_active() -> None:
    assert is_active(_param(**_float()), {})
    assert is_active(_param(**_float()), {"anything": "x"})


def test_a_child_is_active_only_for_its_parent_values() -> None:
    space = _space(opt=_cat("sgd", "adam", "rmsprop"), m=_float(when={"opt": ["sgd", "rmsprop"]}))
    child = space.root["m"]
    assert is_active(child, {"opt": "sgd"})
    assert is_active(child, {"opt": "rmsprop"})
    assert not is_active(child, {"opt": "adam"})
    assert not is_active(child, {})  # parent not chosen (itself inactive)
    assert not is_active(child, {"other": "sgd"})


def test_is_active_follows_a_chain_through_the_order() -> None:
    space = _space(
        a=_cat("on", "off"),
        b=_cat("x", "y", when={"a": ["on"]}),
        c=_float(when={"b": ["x"]}),
    )

    def active(a: str, b: str) -> list[str]:
        chosen: dict[str, Any] = {}
        values = {"a": a, "b": b, "c": 0.5}
        for name, param in space.ordered():
            if is_active(param, chosen):
                chosen[name] = values[name]
        return list(chosen)

    assert active("on", "x") == ["a", "b", "c"]
    assert active("on", "y") == ["a", "b"]
    assert active("off", "x") == ["a"]  # b is inactive, so c is too


@pytest.mark.parametrize(
    ("chosen", "active"), [(1, True), (1.0, True), (True, False), ("1", False)]
)
def test_is_active_tells_bool_and_str_from_int(chosen: Any, active: bool) -> None:
    """A parent value of True or "1" must not activate a child conditioned on 1."""
    space = _space(p=_cat(1, 2), child=_float(when={"p": [1]}))
    assert is_active(space.root["child"], {"p": chosen}) is active


def test_when_values_must_be_choices_of_their_type() -> None:
    with pytest.raises(ValidationError, match="not choices"):
        _space(p=_cat(1, 2), child=_float(when={"p": [True]}))


# -- contains ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, True),
        (1.0, True),
        (0.5, True),
        (1, True),  # an int is a number
        (-1e-12, False),
        (1.0000001, False),
        (math.nan, False),
        (math.inf, False),
        (True, False),
        ("0.5", False),
        (None, False),
    ],
)
def test_contains_float(value: Any, expected: bool) -> None:
    assert contains(_param(**_float(0.0, 1.0)), value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, True),
        (0.25, True),
        (0.75, True),
        (1.0, True),
        (0.3, False),
        (0.1 + 0.15, True),  # float noise on a grid point
        (1.25, False),
    ],
)
def test_contains_float_with_step(value: float, expected: bool) -> None:
    assert contains(_param(**_float(0.0, 1.0, step=0.25)), value) is expected


def test_contains_float_with_a_step_not_dividing_the_range() -> None:
    param = _param(**_float(0.1, 1.0, step=0.3))
    assert all(contains(param, v) for v in (0.1, 0.4, 0.7, 1.0))
    assert not contains(param, 0.2)


def test_contains_log_float() -> None:
    param = _param(**_float(1e-5, 1e-1, log=True))
    assert contains(param, 1e-3)
    assert contains(param, 1e-5) and contains(param, 1e-1)
    assert not contains(param, 0.0)
    assert not contains(param, 0.2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, True),
        (4, True),
        (7, True),
        (10, True),
        (2, False),  # off the step
        (13, False),
        (-2, False),
        (4.0, True),  # an integral float is the same number
        (4.5, False),
        (math.nan, False),
        (math.inf, False),
        (True, False),
        ("4", False),
    ],
)
def test_contains_int_with_step(value: Any, expected: bool) -> None:
    assert contains(_param(type="int", low=1, high=10, step=3), value) is expected


def test_contains_int_bounds() -> None:
    param = _param(type="int", low=-3, high=3)
    assert [v for v in range(-5, 6) if contains(param, v)] == list(range(-3, 4))
    assert not contains(param, False) and not contains(param, True)


def test_contains_log_int() -> None:
    param = _param(type="int", low=1, high=1024, log=True)
    assert contains(param, 1) and contains(param, 3) and contains(param, 1024)
    assert not contains(param, 0) and not contains(param, 1025)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", True),
        (1, True),
        (1.0, True),  # the same number as the choice 1
        (2.5, True),
        (True, False),  # a bool is not the number 1
        (False, False),
        (0, False),
        ("1", False),
        ("A", False),
        (None, False),
    ],
)
def test_contains_categorical_matches_type_and_value(value: Any, expected: bool) -> None:
    assert contains(_param(**_cat("a", 1, 2.5)), value) is expected


def test_contains_categorical_bool_and_int_apart() -> None:
    ints, bools = _param(**_cat(0, 1)), _param(**_cat(False, True))
    assert contains(ints, 1) and not contains(ints, True)
    assert contains(bools, True) and not contains(bools, 1)
    assert not contains(ints, False) and not contains(bools, 0)


def test_contains_accepts_exactly_the_values_of_each_type() -> None:
    """One table per type, so a change to any branch shows up here."""
    params: dict[str, Param] = {
        "float": _param(**_float(-1.0, 1.0)),
        "int": _param(type="int", low=-1, high=1),
        "cat": _param(**_cat("x")),
    }
    values = [-1, 0, 1, -1.0, 0.5, 2, "x", True]
    table = {name: [v for v in values if contains(p, v)] for name, p in params.items()}
    assert table == {
        "float": [-1, 0, 1, -1.0, 0.5],
        "int": [-1, 0, 1, -1.0],
        "cat": ["x"],
    }
    assert isinstance(params["float"], FloatParam) and isinstance(params["int"], IntParam)
