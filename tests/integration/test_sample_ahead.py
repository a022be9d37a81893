"""While a study's workers train, the server works out its next TPE sample ahead; the trials it
hands out are the ones it hands out without that."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import make_spec, register


def _spec(name: str) -> dict[str, Any]:
    return make_spec(
        name=name,
        search_space={
            "x": {"type": "float", "low": -5.0, "high": 5.0},
            "n": {"type": "int", "low": 1, "high": 8},
        },
        sampler={"name": "tpe", "seed": 3, "options": {"n_startup_trials": 3}},
        budget={"max_trials": 14, "lease_seconds": 60},
    )


def _run(client: TestClient, name: str, worker: int, pause: float) -> list[dict[str, Any]]:
    """One slot's trials: claim, two reports, complete carrying the next claim. Each trial does
    worse than every one before it, so it ends in TPE's bad group, where it counted while it
    ran. ``pause``: the time between the slot's requests (its training)."""
    post = client.post
    next_claim = {"study": name, "request_id": f"{name}-0"}
    trial = post("/api/v1/trials/claim", json={"worker_id": worker, **next_claim}).json()
    assert "params" in trial, trial
    params = []
    for i in range(1, 15):
        params.append(trial["params"])
        for step in (1, 2):
            time.sleep(pause)
            body = {"worker_id": worker, "step": step, "value": 100.0 + i}
            assert post(f"/api/v1/trials/{trial['id']}/report", json=body).status_code == 200
        time.sleep(pause)
        body = {
            "worker_id": worker,
            "values": [100.0 + i],
            "next_claim": {"study": name, "request_id": f"{name}-{i}"},
        }
        answer = post(f"/api/v1/trials/{trial['id']}/complete", json=body).json()
        trial = answer["next_trial"]
        if trial is None:
            break
    return params


def _sampler(client: TestClient, name: str) -> Any:
    study_id = client.get(f"/api/v1/studies/{name}").json()["id"]
    return client.app.state.caches.get(study_id).study.sampler


def test_a_slow_study_takes_samples_worked_out_ahead_and_gets_the_same_trials(
    client: TestClient,
) -> None:
    worker = register(client)
    for name in ("slow", "quick"):
        assert client.post("/api/v1/studies", json=_spec(name)).status_code == 201
    slow = _run(client, "slow", worker, pause=0.1)
    quick = _run(client, "quick", worker, pause=0.0)
    assert len(slow) == 14
    assert slow == quick  # the same seed, the same trials, samples ahead or not
    assert _sampler(client, "slow").taken_ahead >= 5  # 11 of TPE's own asks
    assert _sampler(client, "quick").taken_ahead == 0  # answers too close: never worked ahead
