"""The worker fast lane answers exactly what FastAPI's routes answer, and falls back to them."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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

    real_hot = fast_lane._hot
    lane_took = []

    def recording(path: str, body: bytes, state: Any) -> Any:
        hot = real_hot(path, body, state)
        lane_took.append(path)
        return hot

    monkeypatch.setattr(fast_lane, "run_in_threadpool", counting)
    monkeypatch.setattr(fast_lane, "_hot", recording)
    with _client(sqlite_template, tmp_path, lane=False) as plain:
        expected = _script(plain)
    assert not handled and not lane_took
    with _client(sqlite_template, tmp_path, lane=True) as fast:
        got = _script(fast)
    for i, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"request {i}"
    statuses = {status for status, _ in got}
    assert {200, 204, 404, 409, 422} <= statuses
    # the lane took the well-formed calls itself (claims, reports, completes, user-attrs);
    # the ordinary ones on the event loop, the others in a thread
    assert len(lane_took) == 18
    assert 0 < len(handled) < 18


def _report(client: TestClient, trial: int, worker: int, step: int) -> Any:
    body = {"worker_id": worker, "step": step, "value": 1.0 / step}
    return client.post(f"/api/v1/trials/{trial}/report", json=body)


def test_ordinary_calls_are_answered_on_the_event_loop(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threaded: list[Any] = []
    real = fast_lane.run_in_threadpool

    async def counting(call: Any) -> Any:
        threaded.append(call)
        return await real(call)

    monkeypatch.setattr(fast_lane, "run_in_threadpool", counting)
    with _client(sqlite_template, tmp_path, lane=True) as client:
        assert client.post("/api/v1/studies", json=make_spec()).status_code == 201
        tpe = make_spec(name="tpe", sampler={"name": "tpe", "seed": 1})
        assert client.post("/api/v1/studies", json=tpe).status_code == 201
        worker = register(client)
        trial = client.post("/api/v1/trials/claim", json={"worker_id": worker, "study": "study"})
        trial_id = trial.json()["id"]
        # the first call of a study builds its cache: in a thread (the general path)
        assert len(threaded) == 1
        for step in (1, 2, 3):
            answer = _report(client, trial_id, worker, step).json()
            assert answer == {"should_prune": False, "next_trial": None}
        done = client.post(
            f"/api/v1/trials/{trial_id}/complete", json={"worker_id": worker, "values": [0.5]}
        )
        assert done.status_code == 200 and done.json()["state"] == "complete"
        again = client.post("/api/v1/trials/claim", json={"worker_id": worker, "study": "study"})
        assert again.status_code == 200
        assert len(threaded) == 1  # reports, complete and the next claim: on the event loop
        # a study whose last sample took long samples the next in a thread
        tpe_claim = {"worker_id": worker, "study": "tpe"}
        client.post("/api/v1/trials/claim", json=tpe_claim)  # builds the cache: a thread
        second = client.post("/api/v1/trials/claim", json=tpe_claim)
        assert len(threaded) == 2  # TPE's first trials are random samples: quick
        tpe_cache = client.app.state.caches.get(second.json()["study_id"])
        assert tpe_cache.spec.name == "tpe"
        tpe_cache.ask_times.extend([0.5] * 3)  # as a GP's or a large TPE study's
        assert client.post("/api/v1/trials/claim", json=tpe_claim).status_code == 200
        assert len(threaded) == 3
        values = client.get(f"/api/v1/trials/{trial_id}").json()["intermediate_values"]
        assert [v["step"] for v in values] == [1, 2, 3]


def _claimed(client: TestClient) -> tuple[int, int]:
    assert client.post("/api/v1/studies", json=make_spec()).status_code == 201
    worker = register(client)
    trial = client.post("/api/v1/trials/claim", json={"worker_id": worker}).json()["id"]
    assert _report(client, trial, worker, 1).status_code == 200  # the study's cache is built
    return trial, worker


def test_a_held_study_lock_sends_the_call_to_a_thread_that_waits_for_it(
    sqlite_template: Path, tmp_path: Path
) -> None:
    with _client(sqlite_template, tmp_path, lane=True) as client:
        trial, worker = _claimed(client)
        state = client.app.state
        lock = state.caches.lock(state.caches.study_of_trial(trial))
        lock.acquire()  # as a thread deciding for the study would
        pool = ThreadPoolExecutor(2)
        try:
            answer = pool.submit(_report, client, trial, worker, 2)
            time.sleep(0.3)
            assert not answer.done()  # waits for the lock, in a thread
            health = pool.submit(client.get, "/health")  # the event loop is free meanwhile
            assert health.result(timeout=5).status_code == 200
        finally:
            lock.release()
            pool.shutdown()
        assert answer.result().json() == {"should_prune": False, "next_trial": None}


def test_a_held_sqlite_write_lock_does_not_hold_up_the_event_loop(
    sqlite_template: Path, tmp_path: Path
) -> None:
    with _client(sqlite_template, tmp_path, lane=True) as client:
        trial, worker = _claimed(client)
        other = sqlite3.connect(tmp_path / "lane-True.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing, say
        pool = ThreadPoolExecutor(2)
        try:
            answer = pool.submit(_report, client, trial, worker, 2)
            time.sleep(0.3)
            assert not answer.done()  # waits for the write lock, in a thread
            health = pool.submit(client.get, "/health")
            assert health.result(timeout=5).status_code == 200
        finally:
            other.execute("COMMIT")
            other.close()
            pool.shutdown()
        assert answer.result().json() == {"should_prune": False, "next_trial": None}
        values = client.get(f"/api/v1/trials/{trial}").json()["intermediate_values"]
        assert [v["step"] for v in values] == [1, 2]


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


def _uploads(client: TestClient) -> list[tuple[int, Any]]:
    """Every kind of answer an artifact upload gives, good and bad, and what is stored."""
    assert client.post("/api/v1/studies", json=make_spec()).status_code == 201
    worker = register(client)
    other = register(client, name="other")
    trial = client.post("/api/v1/trials/claim", json={"worker_id": worker}).json()["id"]
    url = f"/api/v1/trials/{trial}/artifacts"
    blob = bytes(range(256)) * 8

    def put(path: str, query: str, content: bytes = blob) -> Any:
        return client.put(f"{path}?{query}" if query else path, content=content)

    out = [
        put(f"{url}/model", f"worker_id={worker}"),
        put(f"{url}/checkpoint", f"worker_id={worker}", b"state"),
        put(f"{url}/checkpoint", f"worker_id={worker}", b""),
        put(f"{url}/model", f"worker_id={other}"),
        put(f"{url}/model", ""),
        put(f"{url}/model", "worker_id=0"),
        put(f"{url}/model", "worker_id=abc"),
        put(f"{url}/model", f"worker_id=0{worker}"),
        put(f"{url}/model", f"worker_id={worker}&worker_id={other}"),
        put(f"{url}/model", f"worker_id={worker}&extra=1"),
        put(f"{url}/model", f"worker_id={10**19}"),
        put(f"{url}/weights", f"worker_id={worker}"),
        put(f"{url}/model", f"worker_id={worker}", b"x" * 5000),  # over the store's limit
        put("/api/v1/trials/424242/artifacts/model", f"worker_id={worker}"),
        put("/api/v1/trials/0/artifacts/model", f"worker_id={worker}"),
        client.get(f"{url}/model"),
        client.get(f"{url}/checkpoint"),
    ]
    done = {"worker_id": worker, "values": [1.0]}
    assert client.post(f"/api/v1/trials/{trial}/complete", json=done).status_code == 200
    out += [
        put(f"{url}/checkpoint", f"worker_id={worker}"),  # a finished trial takes no checkpoint
        put(f"{url}/model", f"worker_id={worker}", b"final"),
        client.get(f"{url}/model"),
    ]
    return [
        (r.status_code, r.content)
        if r.headers.get("content-type") == "application/octet-stream"
        else _comparable(r)
        for r in out
    ]


def test_lane_uploads_like_fastapi(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Artifact uploads: the same answers and the same stored bytes through the lane as
    through FastAPI's route; the lane streams the ordinary ones itself."""
    took: list[bool] = []
    real = fast_lane.WorkerFastLane._upload

    async def recording(self: Any, *args: Any) -> bool:
        took.append(await real(self, *args))
        return took[-1]

    monkeypatch.setattr(fast_lane.WorkerFastLane, "_upload", recording)
    monkeypatch.setenv("HPOSVC_MAX_ARTIFACT_BYTES", "4096")
    with _client(sqlite_template, tmp_path, lane=False) as plain:
        expected = _uploads(plain)
    assert not took
    with _client(sqlite_template, tmp_path, lane=True) as fast:
        got = _uploads(fast)
    for i, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"request {i}"
    assert {200, 404, 409, 413, 422} <= {status for status, _ in got}
    assert got[15] == (200, bytes(range(256)) * 8) and got[16] == (200, b"")
    assert got[-1] == (200, b"final")
    # the lane answered the well-formed ones, refused or not (model, checkpoint twice, other
    # worker, too large, unknown trial, both after the complete); FastAPI the rest
    assert took.count(True) == 8 and took.count(False) == 7  # the 7 odd queries


def test_lane_checks_the_token_of_uploads(sqlite_template: Path, tmp_path: Path) -> None:
    with _client(sqlite_template, tmp_path, lane=True, token="s3cret") as client:
        assert client.post("/api/v1/studies", json=make_spec()).status_code == 201
        worker = register(client)
        trial = client.post("/api/v1/trials/claim", json={"worker_id": worker}).json()["id"]
        url = f"/api/v1/trials/{trial}/artifacts/model?worker_id={worker}"
        for header, status in [(None, 401), ("Bearer wrong", 401), ("Bearer s3cret", 200)]:
            client.headers.pop("Authorization", None)
            headers = {"Authorization": header} if header else {}
            assert client.put(url, content=b"m", headers=headers).status_code == status


@pytest.mark.parametrize("lane", [True, False])
def test_an_upload_is_on_disk_before_it_is_answered(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lane: bool
) -> None:
    """The file's bytes are flushed before its name replaces the last one, then the names
    (the trial's directory, and the study's and the store's when they were made for it)."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        events.append(("fsync", "file" if path.name.startswith(".") else path.name))

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        events.append(("replace", Path(dst).name))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setenv("HPOSVC_ARTIFACTS_DIR", str(tmp_path / "store"))
    with _client(sqlite_template, tmp_path, lane=lane) as client:
        client.post("/api/v1/studies", json=make_spec())
        worker = register(client)
        trial = client.post("/api/v1/trials/claim", json={"worker_id": worker}).json()
        url = f"/api/v1/trials/{trial['id']}/artifacts"
        made = [("fsync", str(trial["study_id"])), ("fsync", "store")]  # by the first upload
        for kind in ("checkpoint", "checkpoint", "model"):
            events.clear()
            r = client.put(f"{url}/{kind}?worker_id={worker}", content=kind.encode())
            assert r.status_code == 200, r.text
            assert events == [
                ("fsync", "file"),
                ("replace", kind),
                ("fsync", str(trial["id"])),
                *made,
            ], kind
            made = []
        assert client.get(f"{url}/model").content == b"model"
