"""A server killed in the middle of a study loses nothing; a new one carries on."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import make_spec


@pytest.mark.slow
def test_kill_and_restart_mid_study(database_url: str, start_server) -> None:
    spec = make_spec(
        sampler={"name": "tpe", "seed": 7, "options": {"n_startup_trials": 3}},
        pruner={"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 5}},
        budget={"max_trials": 10, "lease_seconds": 300},
    )
    server = start_server(database_url)
    http = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    assert http.post("/studies", json=spec).status_code == 201
    worker = http.post("/workers", json={"name": "w", "host": "h"}).json()["id"]

    finished = {}
    for _ in range(5):
        t = http.post("/trials/claim", json={"worker_id": worker}).json()
        for step in (1, 2):
            http.post(
                f"/trials/{t['id']}/report",
                json={
                    "worker_id": worker,
                    "step": step,
                    "value": t["params"]["x"] ** 2 + 1 / step,
                },
            )
        r = http.post(
            f"/trials/{t['id']}/complete",
            json={"worker_id": worker, "values": [t["params"]["x"] ** 2]},
        )
        finished[t["id"]] = r.json()
    in_flight = http.post("/trials/claim", json={"worker_id": worker}).json()
    http.post(
        f"/trials/{in_flight['id']}/report", json={"worker_id": worker, "step": 1, "value": 0.5}
    )

    server.stop(kill=True)  # SIGKILL: no shutdown handler runs
    server = start_server(database_url)
    http = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)

    for trial_id, before in finished.items():
        after = http.get(f"/trials/{trial_id}").json()
        assert after["state"] == "complete"
        assert after["values"] == before["values"]
        assert [iv["step"] for iv in after["intermediate_values"]] == [1, 2]
    # the trial in flight is still leased to its worker, which goes on with it
    r = http.post(
        f"/trials/{in_flight['id']}/report", json={"worker_id": worker, "step": 2, "value": 0.4}
    )
    assert r.status_code == 200, r.text
    r = http.post(
        f"/trials/{in_flight['id']}/complete", json={"worker_id": worker, "values": [0.4]}
    )
    assert r.status_code == 200, r.text

    numbers = [in_flight["number"]]
    while (r := http.post("/trials/claim", json={"worker_id": worker})).status_code == 200:
        t = r.json()
        numbers.append(t["number"])
        http.post(f"/trials/{t['id']}/complete", json={"worker_id": worker, "values": [1.0]})
    assert numbers == list(range(5, 10))
    study = http.get("/studies/study").json()
    assert study["state"] == "completed"
    assert study["counts"]["complete"] == 10
