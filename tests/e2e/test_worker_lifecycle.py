"""Worker lifecycle over real processes: SIGTERM hand-back, a server outage, warm starts."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.factories import objective_spec

pytestmark = pytest.mark.slow


def _slow_study(api: httpx.Client, name: str, step_seconds: float, lease: float = 30) -> None:
    spec = objective_spec(
        name,
        "tests/e2e/objectives.py:slow_steps",
        seed=4,
        budget={"max_trials": 1, "max_retries": 0, "lease_seconds": lease},
        step_seconds=step_seconds,
    )
    assert api.post("/studies", json=spec).status_code == 201


def _steps(api: httpx.Client, trial_id: int) -> list[int]:
    return [iv["step"] for iv in api.get(f"/trials/{trial_id}").json()["intermediate_values"]]


def _first_trial_with_steps(api: httpx.Client, study: str, n: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = api.get(f"/studies/{study}/trials").json()["items"]
        if items and len(_steps(api, items[0]["id"])) >= n:
            return items[0]
        time.sleep(0.1)
    raise AssertionError(f"no trial of {study} reported {n} steps")


def test_sigterm_hands_the_trial_back_after_a_checkpoint(
    database_url: str, start_server, start_worker
) -> None:
    server = start_server(database_url)
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    _slow_study(api, "graceful", step_seconds=0.4)
    worker = start_worker(server.url)
    trial = _first_trial_with_steps(api, "graceful", 2)
    os.kill(worker.proc.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    handed_back = api.get(f"/trials/{trial['id']}").json()
    assert handed_back["state"] == "fail"
    assert "handed back" in handed_back["fail_reason"]
    last_step = max(_steps(api, trial["id"]))
    # max_retries is 0, yet the trial runs again: handing back is not a failure of the trial
    successor = start_worker(server.url, "--exit-when-idle", "2")
    assert successor.wait(timeout=120) == 0
    retry = next(
        t
        for t in api.get("/studies/graceful/trials").json()["items"]
        if t["retry_of"] == trial["id"]
    )
    assert retry["state"] == "complete" and retry["attempt"] == 2
    assert _steps(api, retry["id"])[0] == last_step + 1  # resumed right after the checkpoint


def test_second_signal_exits_at_once(database_url: str, start_server, start_worker) -> None:
    server = start_server(database_url)
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    _slow_study(api, "impatient", step_seconds=20)
    worker = start_worker(server.url)
    deadline = time.monotonic() + 60
    while not api.get("/studies/impatient/trials").json()["items"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)
    os.kill(worker.proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    os.kill(worker.proc.pid, signal.SIGTERM)
    started = time.monotonic()
    worker.wait(timeout=15)
    assert time.monotonic() - started < 10  # the 20 s step was not waited for


def test_worker_rides_out_a_server_outage(database_url: str, start_server, start_worker) -> None:
    server = start_server(database_url)
    port = server.port
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    _slow_study(api, "outage", step_seconds=0.3, lease=60)
    worker = start_worker(server.url, "--exit-when-idle", "2")
    trial = _first_trial_with_steps(api, "outage", 2)
    server.stop(kill=True)
    time.sleep(3)
    start_server(database_url, port=port)
    assert worker.wait(timeout=120) == 0
    done = api.get(f"/trials/{trial['id']}").json()
    assert done["state"] == "complete"
    assert _steps(api, trial["id"]) == list(range(1, 11))


def test_warm_start_from_another_trial(database_url: str, start_server, start_worker) -> None:
    server = start_server(database_url)
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    base = {
        "objectives": [{"name": "val_accuracy", "direction": "maximize"}],
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "sampler": {"name": "random", "seed": 1},
        "budget": {"max_trials": 1},
    }
    training = {"dataset": "digits", "model": "mlp", "layers": 2, "width": 32, "max_epochs": 3}
    assert (
        api.post("/studies", json={**base, "name": "source", "training": training}).status_code
        == 201
    )
    first = start_worker(server.url, "--exit-when-idle", "2", "--study", "source")
    assert first.wait(timeout=120) == 0
    source = api.get("/studies/source").json()["best_trial"]
    tuned = {**training, "init_checkpoint": f"trial:{source['id']}", "freeze": 1}
    assert (
        api.post("/studies", json={**base, "name": "tuned", "training": tuned}).status_code == 201
    )
    second = start_worker(server.url, "--exit-when-idle", "2", "--study", "tuned")
    assert second.wait(timeout=120) == 0
    trial = api.get("/studies/tuned/trials").json()["items"][0]
    assert trial["state"] == "complete", trial["fail_reason"]
    assert trial["user_attrs"]["metrics"]["val_accuracy"] > 0.5
