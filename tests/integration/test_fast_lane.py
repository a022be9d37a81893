"""The worker fast lane answers exactly what FastAPI's routes answer, and falls back to them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hposvc.api import fast_lane
from hposvc.app import create_app
from hposvc.settings import Settings
from tests.factories import make_spec, register


@contextmanager
def _client(template: Path, tmp: Path, *, lane: bool, token: str | None = None) -> Iterator:
    path = tmp / f"lane-{lane}.db"
    shutil.copy(template, path)
    settings = Settings(database_url=f"sqlite:///{path}", token=token)
    with TestClient(create_app(settings, migrate=False, fast_lane=lane)) as client:
        if token:
            client.headers["Authorization"] = f"Bearer {token}"
        yield client


def _comparable(response: Any) -> tuple[int, Any]:
    """Status and body without the timestamps, which differ between two runs."""
    if response.status_code == 204:
        return 204, response.content
    body = response.json()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if not k.endswith("_at")}
    return response.status_code, body


A1 = {"a": 1}


def _script(client: TestClient) -> list[tuple[int, Any]]:
    """Every kind of answer the three hot routes give, good and bad."""
    spec = make_spec(budget={"max_trials": 2, "lease_seconds": 60})
    assert client.post("/api/v1/studies", json=spec).status_code == 201
    worker = register(client)
    other = register(client, name="other")
    post = client.post
    out = []
    first = post("/api/v1/trials/claim", json={"worker_id": worker, "request_id": "r1"})
    trial = first.json()["id"]
    out += [
        first,
        post("/api/v1/trials/claim", json={"worker_id": worker, "request_id": "r1"}),
        post("/api/v1/trials/claim", json={"worker_id": worker, "study": "nope"}),
        post("/api/v1/trials/claim", json={"worker_id": 9999}),
        post("/api/v1/trials/claim", json={"study": "study"}),
        post("/api/v1/trials/claim", content=b'{"worker_id": ', headers=_json()),
        post("/api/v1/trials/claim", json={"worker_id": worker, "extra": 1}),
        post(f"/api/v1/trials/{trial}/report", json={"worker_id": worker, "step": 1, "value": 2}),
        post(f"/api/v1/trials/{trial}/report", json={"worker_id": worker, "step": 1, "value": 2}),
        post(f"/api/v1/trials/{trial}/report", json={"worker_id": other, "step": 2, "value": 1}),
        post(f"/api/v1/trials/{trial}/report", json={"worker_id": worker, "step": -1, "value": 1}),
        post(f"/api/v1/trials/{trial}/report", json={"worker_id": worker, "step": 2}),
        post("/api/v1/trials/424242/report", json={"worker_id": worker, "step": 1, "value": 1}),
        post("/api/v1/trials/0/report", json={"worker_id": worker, "step": 1, "value": 1}),
        post(f"/api/v1/trials/{10**19}/report", json={"worker_id": worker, "step": 1, "value": 1}),
        post(f"/api/v1/trials/{trial}/complete", json={"worker_id": worker, "values": [1, 2]}),
        post(f"/api/v1/trials/{trial}/complete", json={"worker_id": worker, "values": [1.5]}),
        post(f"/api/v1/trials/{trial}/complete", json={"worker_id": worker, "values": [1.5]}),
        post(f"/api/v1/trials/{trial}/complete", json={"worker_id": worker, "values": [3.0]}),
        post(f"/api/v1/trials/{trial}/report", json={"worker_id": worker, "step": 3, "value": 1}),
        post(f"/api/v1/trials/{trial}/user-attrs", json={"worker_id": worker, "user_attrs": {}}),
        post(
            f"/api/v1/trials/{trial}/user-attrs", json={"worker_id": other, "user_attrs": {"a": 1}}
        ),
        post(
            f"/api/v1/trials/{trial}/user-attrs",
            json={"worker_id": worker, "user_attrs": {"a": 1}},
        ),
    ]
    second = post("/api/v1/trials/claim", json={"worker_id": other}).json()["id"]
    out += [
        post(f"/api/v1/trials/{second}/complete", json={"worker_id": other, "values": [0.5]}),
        post("/api/v1/trials/claim", json={"worker_id": worker}),  # budget spent: 204
    ]
    return [_comparable(r) for r in out]


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def test_lane_answers_like_fastapi(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled = []
    real = fast_lane.run_in_threadpool

    async def counting(call: Any) -> Any:
        handled.append(call)
        return await real(call)

    monkeypatch.setattr(fast_lane, "run_in_threadpool", counting)
    with _client(sqlite_template, tmp_path, lane=False) as plain:
        expected = _script(plain)
    assert not handled
    with _client(sqlite_template, tmp_path, lane=True) as fast:
        got = _script(fast)
    for i, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"request {i}"
    statuses = {status for status, _ in got}
    assert {200, 204, 404, 409, 422} <= statuses
    # the lane took the well-formed calls itself (claims, reports, completes, user-attrs)
    assert len(handled) == 18


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic s3cret", "Bearer s3cret"])
def test_lane_checks_the_token(sqlite_template: Path, tmp_path: Path, header: str | None) -> None:
    with _client(sqlite_template, tmp_path, lane=True, token="s3cret") as client:
        spec = make_spec()
        assert client.post("/api/v1/studies", json=spec).status_code == 201
        worker = register(client)
        headers = {"Authorization": header} if header else {}
        client.headers.pop("Authorization")
        r = client.post("/api/v1/trials/claim", json={"worker_id": worker}, headers=headers)
        assert r.status_code == (200 if header == "Bearer s3cret" else 401), r.text
