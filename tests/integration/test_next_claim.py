"""A worker's next claim sent with the request that ends its trial (``NextClaim``): the report
that prunes and the complete answer with the next trial, as ``POST /trials/claim`` would."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import make_spec, register

THRESHOLD = {"name": "threshold", "options": {"upper": 5.0}}  # a value above 5 prunes


def _create(client: TestClient, **overrides: Any) -> None:
    r = client.post("/api/v1/studies", json=make_spec(**overrides))
    assert r.status_code == 201, r.text


def _claim(client: TestClient, worker: int, **extra: Any) -> dict | None:
    r = client.post("/api/v1/trials/claim", json={"worker_id": worker, **extra})
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def _report(client: TestClient, trial: dict, worker: int, step: int, value: float, key: str):
    body = {"worker_id": worker, "step": step, "value": value, "next_claim": {"request_id": key}}
    return client.post(f"/api/v1/trials/{trial['id']}/report", json=body)


def _complete(client: TestClient, trial: dict, worker: int, next_claim: dict):
    body = {"worker_id": worker, "values": [0.5], "next_claim": next_claim}
    return client.post(f"/api/v1/trials/{trial['id']}/complete", json=body)


def _trials(client: TestClient, study: str = "study") -> list[dict]:
    return client.get(f"/api/v1/studies/{study}/trials").json()["items"]


def test_the_report_that_prunes_claims_the_next_trial_and_a_retry_gets_it_again(
    client: TestClient,
) -> None:
    _create(client, pruner=THRESHOLD)
    worker = register(client)
    first = _claim(client, worker)
    assert first is not None
    going_on = _report(client, first, worker, 1, 1.0, "next-1")
    assert going_on.json() == {"should_prune": False, "next_trial": None}
    assert len(_trials(client)) == 1  # a report that does not prune claims nothing

    pruned = _report(client, first, worker, 2, 9.0, "next-1")
    assert pruned.status_code == 200, pruned.text
    nxt = pruned.json()["next_trial"]
    assert pruned.json()["should_prune"] is True
    assert nxt is not None and nxt["number"] == 1 and nxt["study"] == "study"
    held = client.get(f"/api/v1/trials/{nxt['id']}").json()
    assert (held["state"], held["worker_id"]) == ("running", worker)

    again = _report(client, first, worker, 2, 9.0, "next-1")  # the answer was lost: a retry
    assert again.json() == pruned.json()
    assert _claim(client, worker, request_id="next-1") == nxt  # the worker's own claim replays
    assert len(_trials(client)) == 2


def test_each_complete_claims_the_next_trial_until_the_budget_is_spent(
    client: TestClient,
) -> None:
    _create(client, budget={"max_trials": 3, "lease_seconds": 60})
    worker = register(client)
    trial = _claim(client, worker)
    numbers = []
    for i in range(3):
        assert trial is not None
        numbers.append(trial["number"])
        r = _complete(client, trial, worker, {"request_id": f"k{i}"})
        assert r.status_code == 200, r.text
        assert (r.json()["id"], r.json()["state"]) == (trial["id"], "complete")
        trial = r.json()["next_trial"]
    assert trial is None  # the budget is spent: none, as a claim would answer
    assert numbers == [0, 1, 2]
    assert [t["state"] for t in _trials(client)] == ["complete"] * 3
    assert client.get("/api/v1/studies/study").json()["state"] == "completed"


def test_the_next_claim_is_the_claim_the_worker_would_make(client: TestClient) -> None:
    _create(client, name="a")
    _create(client, name="b")
    worker = register(client)
    trial = _claim(client, worker, study="a")
    assert trial is not None
    r = _complete(client, trial, worker, {"study": "b", "request_id": "to-b"})
    assert r.json()["next_trial"]["study"] == "b"


def test_a_next_claim_that_fails_leaves_the_answer_and_the_worker_claims_itself(
    client: TestClient,
) -> None:
    _create(client)
    worker = register(client)
    trial = _claim(client, worker)
    assert trial is not None
    r = _complete(client, trial, worker, {"study": "no-such-study", "request_id": "k"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["next_trial"]) == ("complete", None)
    own = client.post(
        "/api/v1/trials/claim",
        json={"worker_id": worker, "study": "no-such-study", "request_id": "k"},
    )
    assert own.status_code == 404


def test_a_bad_next_claim_is_refused_and_writes_nothing(client: TestClient) -> None:
    _create(client, pruner=THRESHOLD)
    worker = register(client)
    trial = _claim(client, worker)
    assert trial is not None
    url = f"/api/v1/trials/{trial['id']}"
    for bad in ({"request_id": ""}, {"request_id": "k", "extra": 1}, {"study": "study"}):
        report = {"worker_id": worker, "step": 1, "value": 9.0, "next_claim": bad}
        assert client.post(f"{url}/report", json=report).status_code == 422
        done = {"worker_id": worker, "values": [0.5], "next_claim": bad}
        assert client.post(f"{url}/complete", json=done).status_code == 422
    detail = client.get(url).json()
    assert (detail["state"], detail["intermediate_values"]) == ("running", [])
    assert len(_trials(client)) == 1
