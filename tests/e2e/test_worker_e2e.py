"""Server and ``hposvc worker`` as real processes, training real (tiny) models."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.factories import objective_spec

pytestmark = pytest.mark.slow


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _trials(api: httpx.Client, study: str) -> list[dict]:
    return api.get(f"/studies/{study}/trials", params={"limit": 1000}).json()["items"]


def test_two_slot_worker_runs_a_study_with_pruning_and_early_stopping(
    database_url: str, start_server, start_worker
) -> None:
    server = start_server(database_url)
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    spec = {
        "name": "mlp",
        "objectives": [{"name": "val_accuracy", "direction": "maximize"}],
        "search_space": {
            "lr": {"type": "float", "low": 1e-5, "high": 3e-2, "log": True},
            "width": {"type": "int", "low": 8, "high": 32},
        },
        "sampler": {"name": "random", "seed": 5},
        "pruner": {
            "name": "percentile",
            # Keeps the top quarter at each step: after the two startup trials, a trial that
            # is not among the best is pruned (with 75, some runs pruned none of 8 trials).
            "options": {"percentile": 25, "n_startup_trials": 2, "n_warmup_steps": 1},
        },
        "budget": {"max_trials": 10, "max_concurrent": 2, "lease_seconds": 30},
        "training": {
            "dataset": "digits",
            "model": "mlp",
            "max_epochs": 8,
            "layers": 1,
            "early_stopping": {"patience": 1, "min_delta": 0.05},
        },
    }
    assert api.post("/studies", json=spec).status_code == 201
    failing = {
        "name": "flaky",
        "objectives": [{"name": "value", "direction": "minimize"}],
        "search_space": {
            "x": {"type": "float", "low": 0, "high": 1},
            "mode": {"type": "categorical", "choices": ["ok", "boom"]},
        },
        "sampler": {"name": "random", "seed": 1},
        "budget": {"max_trials": 8, "max_retries": 0},
        "training": {"entrypoint": "tests/e2e/objectives.py:flaky"},
    }
    assert api.post("/studies", json=failing).status_code == 201
    worker = start_worker(server.url, "--slots-per-device", "2", "--exit-when-idle", "3")
    assert worker.wait(timeout=300) == 0, worker.log.read_text()[-3000:]

    study = api.get("/studies/mlp").json()
    assert study["state"] == "completed"
    trials = _trials(api, "mlp")
    assert len(trials) == 10
    states = {t["state"] for t in trials}
    assert "pruned" in states and "complete" in states
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert all(t["pruned_step"] < 8 for t in pruned)
    assert all(t["user_attrs"]["stopped"] == "pruned" for t in pruned)
    early = [t for t in trials if t["user_attrs"].get("stopped") == "early_stopped"]
    assert early, "no trial stopped early"
    assert all(t["user_attrs"]["stop_epoch"] < 8 for t in early)
    done = [t for t in trials if t["state"] == "complete"]
    assert all("test_accuracy" in t["user_attrs"]["metrics"] for t in done)
    best = study["best_trial"]
    assert api.get(f"/trials/{best['id']}/artifacts/model").status_code == 200

    flaky = _trials(api, "flaky")
    assert api.get("/studies/flaky").json()["state"] == "completed"
    boom = [t for t in flaky if t["params"]["mode"] == "boom"]
    ok = [t for t in flaky if t["params"]["mode"] == "ok"]
    assert boom and ok
    assert all(t["state"] == "fail" for t in boom)
    assert all(
        "Traceback" in t["fail_reason"] and "exploded on purpose" in t["fail_reason"] for t in boom
    )
    assert all(t["state"] == "complete" for t in ok)


def test_killed_worker_trial_resumes_from_its_checkpoint(
    database_url: str, start_server, start_worker
) -> None:
    server = start_server(database_url)
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    spec = objective_spec(
        "resume",
        "tests/e2e/objectives.py:slow_steps",
        seed=2,
        budget={"max_trials": 2, "max_concurrent": 1, "max_retries": 2, "lease_seconds": 3},
        step_seconds=0.3,
    )
    assert api.post("/studies", json=spec).status_code == 201
    first = start_worker(server.url, "--slots-per-device", "1")

    def reported_three():
        items = _trials(api, "resume")
        if not items:
            return None
        detail = api.get(f"/trials/{items[0]['id']}").json()
        return detail if len(detail["intermediate_values"]) >= 3 else None

    victim = _wait_for(reported_three, 120, "three reported steps")
    first.kill_hard()
    last_step_before = max(
        iv["step"] for iv in api.get(f"/trials/{victim['id']}").json()["intermediate_values"]
    )

    second = start_worker(server.url, "--slots-per-device", "1", "--exit-when-idle", "3")
    assert second.wait(timeout=180) == 0, second.log.read_text()[-3000:]

    failed = api.get(f"/trials/{victim['id']}").json()
    assert failed["state"] == "fail" and "lease expired" in failed["fail_reason"]
    retry = next(t for t in _trials(api, "resume") if t["retry_of"] == victim["id"])
    assert retry["state"] == "complete"
    assert retry["attempt"] == 2
    assert retry["params"] == victim["params"]
    steps = [iv["step"] for iv in api.get(f"/trials/{retry['id']}").json()["intermediate_values"]]
    # it went on from the last checkpoint (a step counter saved after every step), not from 1
    assert 3 <= steps[0] <= last_step_before + 1
    assert steps == list(range(steps[0], 11))
    assert api.get("/studies/resume").json()["state"] == "completed"
