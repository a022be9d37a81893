"""Schemathesis over the app's own OpenAPI, in process, on SQLite.

Every generated request must get a non-5xx answer that matches the declared response schema.
The app's lifespan (migrations, database, lease sweeper) is run by a TestClient; schemathesis
sends its requests to the same app object through its ASGI transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from hposvc.app import create_app
from hposvc.settings import Settings

MAX_EXAMPLES = 100


class _AsServed:
    """The app under test as a server runs it, minus the lifespan (the TestClient runs that).

    Rejecting the lifespan scope before reading a message tells schemathesis the app has none.
    An error the app re-raises after its 500 went out is what a server would log: the client
    has its answer, and the check on that answer is what fails.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("the lifespan is run by the TestClient")
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if not started:
                raise


def _document_only_app() -> FastAPI:
    """An app that is never started: enough to serve /openapi.json, which needs no database."""
    return create_app(Settings(database_url="sqlite://"), migrate=False)


# The schema is loaded at collection (schemathesis.pytest.from_fixture does not work with this
# pytest); the requests go to whichever app the module fixture has started.
_served = _AsServed(_document_only_app())
schema = schemathesis.openapi.from_asgi("/openapi.json", _served)


@pytest.fixture(scope="module", autouse=True)
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, TestClient]]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "hposvc.db"
    app = create_app(Settings(database_url=f"sqlite:///{path}"), migrate=True)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        _served.app = app
        try:
            yield app, client
        finally:
            _served.app = _document_only_app()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_responses_match_the_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])


# -- the document itself -------------------------------------------------------------------

WORKER_OPERATIONS = {
    ("post", "/api/v1/trials/claim"): "ClaimRequest",
    ("post", "/api/v1/trials/{trial_id}/report"): "ReportRequest",
    ("post", "/api/v1/trials/{trial_id}/complete"): "CompleteRequest",
    ("post", "/api/v1/trials/{trial_id}/fail"): "FailRequest",
    ("post", "/api/v1/workers"): "WorkerRegister",
}


def _openapi(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(("method", "path"), list(WORKER_OPERATIONS))
def test_openapi_declares_the_worker_protocol_bodies(
    fuzz_app: tuple[FastAPI, TestClient], method: str, path: str
) -> None:
    doc = _openapi(fuzz_app[1])
    operation = doc["paths"][path][method]
    body = operation["requestBody"]
    assert body.get("required") is True
    ref = body["content"]["application/json"]["schema"]["$ref"]
    model = WORKER_OPERATIONS[(method, path)]
    assert ref == f"#/components/schemas/{model}"
    component = doc["components"]["schemas"][model]
    assert "worker_id" in component["properties"] or model == "WorkerRegister"
    assert set(component.get("required", [])) >= (
        {"name", "host"} if model == "WorkerRegister" else {"worker_id"}
    )
    assert "200" in operation["responses"]


def test_openapi_declares_the_heartbeat(fuzz_app: tuple[FastAPI, TestClient]) -> None:
    doc = _openapi(fuzz_app[1])
    operation = doc["paths"]["/api/v1/workers/{worker_id}/heartbeat"]["post"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["worker_id"]["in"] == "path"
    assert params["worker_id"]["schema"]["type"] == "integer"
    assert "404" in operation["responses"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"] == "#/components/schemas/HeartbeatResponse"


def test_openapi_declares_json_and_yaml_study_specs(fuzz_app: tuple[FastAPI, TestClient]) -> None:
    doc = _openapi(fuzz_app[1])
    body = doc["paths"]["/api/v1/studies"]["post"]["requestBody"]
    assert body.get("required") is True
    for media_type in ("application/json", "application/yaml"):
        assert body["content"][media_type]["schema"] == {"$ref": "#/components/schemas/StudySpec"}
    assert "StudySpec" in doc["components"]["schemas"]


def test_openapi_error_responses_use_the_error_body(fuzz_app: tuple[FastAPI, TestClient]) -> None:
    doc = _openapi(fuzz_app[1])
    error = doc["components"]["schemas"]["ErrorResponse"]
    assert set(error["required"]) == {"code", "detail"}
    for path in ("/api/v1/trials/{trial_id}/complete", "/api/v1/studies/{study_name}"):
        for method, operation in doc["paths"][path].items():
            schema_ref = operation["responses"]["404"]["content"]["application/json"]["schema"]
            assert schema_ref == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)
