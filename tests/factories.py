"""Builders for test data: specs and API helpers (not fixtures)."""

from __future__ import annotations

from typing import Any


def make_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "study",
        "objectives": [{"name": "loss", "direction": "minimize"}],
        "search_space": {
            "x": {"type": "float", "low": -5.0, "high": 5.0},
            "n": {"type": "int", "low": 1, "high": 8},
            "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
            "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"opt": ["sgd"]}},
        },
        "sampler": {"name": "random", "seed": 1},
        "pruner": {"name": "none"},
        "budget": {"max_trials": 10, "max_retries": 1, "lease_seconds": 60},
        "training": {"dataset": "digits", "max_epochs": 5},
    }
    spec.update(overrides)
    return spec


def objective_spec(
    name: str, entrypoint: str, *, seed: int, budget: dict[str, Any], **training: Any
) -> dict[str, Any]:
    """A study of a user objective (``tests/e2e/objectives.py:...``) over x in [0, 1]."""
    return {
        "name": name,
        "objectives": [{"name": "value", "direction": "minimize"}],
        "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
        "sampler": {"name": "random", "seed": seed},
        "budget": budget,
        "training": {"entrypoint": entrypoint, **training},
    }


def grid_spec(name: str = "grid", points: int = 120, **budget: Any) -> dict[str, Any]:
    """A grid study of ``points`` = 10 x (points / 10) points."""
    return make_spec(
        name=name,
        search_space={
            "a": {"type": "int", "low": 0, "high": 9},
            "b": {"type": "int", "low": 0, "high": points // 10 - 1},
        },
        sampler={"name": "grid"},
        budget={"max_trials": points * 2, "lease_seconds": 60, **budget},
    )


def register(client: Any, name: str = "w", host: str = "test-host") -> int:
    r = client.post("/api/v1/workers", json={"name": name, "host": host, "slots": 1})
    assert r.status_code == 200, r.text
    return r.json()["id"]
