"""The claim answer says whether the study's reports can answer prune (``prunes``): a worker
queues the reports of a study without a pruner instead of waiting for each answer."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import make_spec, register


def _claim(client: TestClient, worker: int) -> dict:
    r = client.post("/api/v1/trials/claim", json={"worker_id": worker})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_study_without_a_pruner_says_its_reports_never_prune(client: TestClient) -> None:
    assert client.post("/api/v1/studies", json=make_spec()).status_code == 201
    worker = register(client)
    first = _claim(client, worker)
    assert first["prunes"] is False
    # a retry is claimed on the general path; it says the same
    r = client.post(
        f"/api/v1/trials/{first['id']}/fail",
        json={"worker_id": worker, "reason": "lost", "retry": True},
    )
    assert r.status_code == 200, r.text
    retry = _claim(client, worker)
    assert (retry["attempt"], retry["prunes"]) == (2, False)


def test_a_study_with_a_pruner_says_its_reports_may_prune(client: TestClient) -> None:
    spec = make_spec(pruner={"name": "median", "options": {"n_startup_trials": 0}})
    assert client.post("/api/v1/studies", json=spec).status_code == 201
    assert _claim(client, register(client))["prunes"] is True
