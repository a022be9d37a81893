"""The worker protocol through the API: claim, report, complete, fail, idempotency, leases."""

from __future__ import annotations

import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from hposvc.db.session import Database
from hposvc.schemas.workers import WorkerRegister
from hposvc.services import workers
from tests.factories import make_spec, register


def _create(client: TestClient, **overrides) -> dict:
    r = client.post("/api/v1/studies", json=make_spec(**overrides))
    assert r.status_code == 201, r.text
    return r.json()


def _claim(client: TestClient, worker: int, **extra) -> dict | None:
    r = client.post("/api/v1/trials/claim", json={"worker_id": worker, **extra})
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def test_claim_returns_the_contract_fields(client: TestClient) -> None:
    _create(client)
    worker = register(client)
    trial = _claim(client, worker)
    assert trial is not None
    for field in ("id", "study", "number", "params", "training", "attempt", "lease_expires_at"):
        assert field in trial
    assert trial["study"] == "study"
    assert trial["attempt"] == 1
    assert trial["training"] == {"dataset": "digits", "max_epochs": 5}
    params = trial["params"]
    assert -5 <= params["x"] <= 5 and 1 <= params["n"] <= 8
    # momentum is active only for sgd
    assert ("momentum" in params) == (params["opt"] == "sgd")


def test_study_completes_when_budget_is_spent(client: TestClient) -> None:
    _create(client, budget={"max_trials": 5})
    worker = register(client)
    for _ in range(5):
        trial = _claim(client, worker)
        assert trial is not None
        r = client.post(
            f"/api/v1/trials/{trial['id']}/complete",
            json={"worker_id": worker, "values": [trial["params"]["x"] ** 2]},
        )
        assert r.status_code == 200, r.text
    assert _claim(client, worker) is None
    study = client.get("/api/v1/studies/study").json()
    assert study["state"] == "completed"
    assert study["counts"]["complete"] == 5
    best = min(t["values"][0] for t in client.get("/api/v1/studies/study/trials").json()["items"])
    assert study["best_trial"]["values"][0] == best


def test_retried_calls_answer_the_same(client: TestClient) -> None:
    _create(client)
    worker = register(client)
    assert register(client) == worker  # re-registering keeps the id
    first = _claim(client, worker, request_id="claim-1")
    again = _claim(client, worker, request_id="claim-1")
    assert first == again
    url = f"/api/v1/trials/{first['id']}"
    r1 = client.post(f"{url}/report", json={"worker_id": worker, "step": 1, "value": 0.5})
    r2 = client.post(f"{url}/report", json={"worker_id": worker, "step": 1, "value": 0.5})
    assert r1.json() == r2.json() == {"should_prune": False, "next_trial": None}
    c1 = client.post(f"{url}/complete", json={"worker_id": worker, "values": [0.25]})
    c2 = client.post(f"{url}/complete", json={"worker_id": worker, "values": [0.25]})
    assert c1.status_code == c2.status_code == 200
    assert c1.json() == c2.json()
    conflict = client.post(f"{url}/complete", json={"worker_id": worker, "values": [0.3]})
    assert conflict.status_code == 409
    detail = client.get(url).json()
    assert detail["values"] == [0.25]
    assert detail["intermediate_values"] == [{"step": 1, "value": 0.5}]


def test_another_worker_gets_409(client: TestClient) -> None:
    _create(client)
    owner, other = register(client, "a"), register(client, "b")
    trial = _claim(client, owner)
    r = client.post(
        f"/api/v1/trials/{trial['id']}/report", json={"worker_id": other, "step": 1, "value": 1.0}
    )
    assert r.status_code == 409
    assert r.json()["code"] == "lease_lost"


def test_median_pruner_prunes_a_clearly_worse_curve(client: TestClient) -> None:
    _create(
        client,
        pruner={"name": "median", "options": {"n_startup_trials": 3, "n_warmup_steps": 2}},
        budget={"max_trials": 10},
    )
    worker = register(client)
    for _ in range(3):  # good curves, finished
        t = _claim(client, worker)
        for step in range(1, 6):
            r = client.post(
                f"/api/v1/trials/{t['id']}/report",
                json={"worker_id": worker, "step": step, "value": 1.0 / step},
            )
            assert r.json()["should_prune"] is False
        client.post(
            f"/api/v1/trials/{t['id']}/complete", json={"worker_id": worker, "values": [0.2]}
        )
    bad = _claim(client, worker)
    answers = []
    for step in range(1, 6):
        r = client.post(
            f"/api/v1/trials/{bad['id']}/report",
            json={"worker_id": worker, "step": step, "value": 10.0 + step},
        )
        answers.append(r.json()["should_prune"])
        if answers[-1]:
            break
    assert answers[0] is False  # step 1 is inside the warm-up
    assert answers[-1] is True
    detail = client.get(f"/api/v1/trials/{bad['id']}").json()
    assert detail["state"] == "pruned"
    assert detail["pruned_step"] == len(answers)
    # a retried report of the pruning step answers the same
    r = client.post(
        f"/api/v1/trials/{bad['id']}/report",
        json={"worker_id": worker, "step": len(answers), "value": 10.0 + len(answers)},
    )
    assert r.json() == {"should_prune": True, "next_trial": None}


def test_expired_lease_fails_the_trial_and_reissues_its_params(client: TestClient) -> None:
    _create(client, budget={"max_trials": 3, "max_retries": 1, "lease_seconds": 1})
    silent, alive = register(client, "silent"), register(client, "alive")
    lost = _claim(client, silent)
    time.sleep(1.5)
    # the stale worker's report is refused
    r = client.post(
        f"/api/v1/trials/{lost['id']}/report", json={"worker_id": silent, "step": 1, "value": 1.0}
    )
    assert r.status_code == 409
    failed = client.get(f"/api/v1/trials/{lost['id']}").json()
    assert failed["state"] == "fail"
    assert "lease expired" in failed["fail_reason"]
    retry = _claim(client, alive)
    assert retry["params"] == lost["params"]
    assert retry["attempt"] == 2
    assert retry["retry_of"] == lost["id"]


def test_heartbeat_keeps_the_lease(client: TestClient) -> None:
    # 2.4 s of heartbeats outlive a 2 s lease; each comes 0.4 s after the last, which leaves
    # a loaded machine 1.6 s of slack (with a 1 s lease it once ran out under the full suite)
    _create(client, budget={"max_trials": 3, "lease_seconds": 2})
    worker = register(client)
    trial = _claim(client, worker)
    for _ in range(6):
        time.sleep(0.4)
        r = client.post(f"/api/v1/workers/{worker}/heartbeat")
        assert r.status_code == 200 and r.json()["leases_extended"] == 1
    r = client.post(
        f"/api/v1/trials/{trial['id']}/complete", json={"worker_id": worker, "values": [1.0]}
    )
    assert r.status_code == 200, r.text


def test_failed_trial_is_retried_then_given_up(client: TestClient) -> None:
    _create(client, budget={"max_trials": 1, "max_retries": 2})
    worker = register(client)
    attempts = []
    while (t := _claim(client, worker)) is not None:
        attempts.append(t)
        r = client.post(
            f"/api/v1/trials/{t['id']}/fail", json={"worker_id": worker, "reason": "boom"}
        )
        assert r.status_code == 200
    assert [t["attempt"] for t in attempts] == [1, 2, 3]
    assert all(t["params"] == attempts[0]["params"] for t in attempts)
    study = client.get("/api/v1/studies/study").json()
    assert study["state"] == "completed"
    assert study["counts"]["fail"] == 3


def test_a_failure_that_would_repeat_is_not_retried(client: TestClient) -> None:
    _create(client, budget={"max_trials": 2, "max_retries": 2})
    worker = register(client)
    first = _claim(client, worker)
    body = {"worker_id": worker, "reason": "loss is nan at epoch 1", "retry": False}
    assert client.post(f"/api/v1/trials/{first['id']}/fail", json=body).status_code == 200
    second = _claim(client, worker)
    assert second["attempt"] == 1 and second["params"] != first["params"]  # a new trial
    assert client.post(f"/api/v1/trials/{second['id']}/fail", json=body).status_code == 200
    assert _claim(client, worker) is None
    study = client.get("/api/v1/studies/study").json()
    assert study["state"] == "completed" and study["counts"]["fail"] == 2


def test_enqueued_trial_is_claimed_first(client: TestClient) -> None:
    _create(client)
    worker = register(client)
    r = client.post(
        "/api/v1/studies/study/trials", json={"params": {"x": 1.5, "n": 3, "opt": "adam"}}
    )
    assert r.status_code == 201, r.text
    trial = _claim(client, worker)
    assert trial["params"] == {"x": 1.5, "n": 3, "opt": "adam"}


def test_pause_resume_stop(client: TestClient) -> None:
    _create(client)
    worker = register(client)
    assert (
        client.post("/api/v1/studies/study/actions", json={"action": "pause"}).json()["state"]
        == "paused"
    )
    assert _claim(client, worker) is None
    client.post("/api/v1/studies/study/actions", json={"action": "resume"})
    assert _claim(client, worker) is not None
    client.post("/api/v1/studies/study/actions", json={"action": "stop"})
    assert _claim(client, worker) is None
    r = client.post("/api/v1/studies/study/actions", json={"action": "resume"})
    assert r.status_code == 409


def test_multi_objective_study_reports_a_pareto_front(client: TestClient) -> None:
    _create(
        client,
        objectives=[
            {"name": "err", "direction": "minimize"},
            {"name": "speed", "direction": "maximize"},
        ],
        sampler={"name": "nsga2", "seed": 3, "options": {"population_size": 4}},
        budget={"max_trials": 8},
    )
    worker = register(client)
    while (t := _claim(client, worker)) is not None:
        x = t["params"]["x"]
        r = client.post(
            f"/api/v1/trials/{t['id']}/complete",
            json={"worker_id": worker, "values": [x * x, -((x - 2) ** 2)]},
        )
        assert r.status_code == 200, r.text
    front = client.get("/api/v1/studies/study").json()["pareto_front"]
    assert front
    points = [t["values"] for t in front]
    for a in points:  # no point of the front dominates another
        for b in points:
            assert not (b[0] <= a[0] and b[1] >= a[1] and b != a)


def test_trials_list_filters_and_sorts(client: TestClient) -> None:
    _create(client, budget={"max_trials": 6})
    worker = register(client)
    for i in range(6):
        t = _claim(client, worker)
        if i % 2:
            client.post(
                f"/api/v1/trials/{t['id']}/fail", json={"worker_id": worker, "reason": "x"}
            )
        else:
            client.post(
                f"/api/v1/trials/{t['id']}/complete",
                json={"worker_id": worker, "values": [math.sin(i)]},
            )
    page = client.get(
        "/api/v1/studies/study/trials", params={"state": "complete", "sort": "value", "limit": 2}
    ).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    values = [t["values"][0] for t in page["items"]]
    assert values == sorted(values)


def test_a_worker_registered_several_times_at_once_gets_one_id(database_url: str) -> None:
    """A daemon's registrations racing each other (slots starting together, a retry): every
    one answers the same id, none fails on the name and host's unique key."""
    db = Database(database_url)
    body = WorkerRegister(name=f"twin-{uuid.uuid4().hex}", host="h", slots=2, devices=["cpu"])
    start = threading.Barrier(8)

    def register_at_once(_: int) -> int:
        start.wait()
        return workers.register(db=db, body=body)

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(register_at_once, range(8)))
    assert len(set(ids)) == 1
    again = workers.register(db=db, body=body.model_copy(update={"slots": 3}))
    assert again == ids[0]
    [listed] = [w for w in workers.list_workers(db=db) if w.id == again]
    assert (listed.slots, listed.devices) == (3, ["cpu"])
    db.dispose()
