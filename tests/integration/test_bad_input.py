"""Bad input through the API: a 4xx whose JSON body names the field, and nothing written.

Every case runs on both backends against the same small world (a few studies, a worker, running
trials); the rows of every table are compared before and after the refused request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from tests.factories import grid_spec, make_spec, register

API = "/api/v1"
TABLES = ("studies", "trials", "workers", "intermediate_values")
MIB = 1 << 20
JSON_TYPE = {"content-type": "application/json"}
YAML_TYPE = {"content-type": "application/yaml"}
TWO_OBJECTIVES = [
    {"name": "err", "direction": "minimize"},
    {"name": "speed", "direction": "maximize"},
]


def _snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order: equal snapshots mean nothing was written."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {
                table: [
                    tuple(row)
                    for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))
                ]
                for table in TABLES
            }
    finally:
        engine.dispose()


def _created(client: TestClient, **overrides: Any) -> dict[str, Any]:
    r = client.post(f"{API}/studies", json=make_spec(**overrides))
    assert r.status_code == 201, r.text
    return r.json()


def _claimed(client: TestClient, worker: int, study: str) -> dict[str, Any]:
    r = client.post(f"{API}/trials/claim", json={"worker_id": worker, "study": study})
    assert r.status_code == 200, r.text
    return r.json()


@dataclass(frozen=True)
class World:
    worker: int
    trial: int  # running in "study" (one objective), held by ``worker``, one report stored
    multi_trial: int  # running in "multi" (two objectives), held by ``worker``


@pytest.fixture
def world(client: TestClient) -> World:
    """study: running · multi: two objectives · done: completed · halted: stopped."""
    _created(client)
    _created(client, name="multi", objectives=TWO_OBJECTIVES)
    _created(client, name="done", budget={"max_trials": 1})
    _created(client, name="halted")
    worker = register(client)
    trial = _claimed(client, worker, "study")
    multi = _claimed(client, worker, "multi")
    done = _claimed(client, worker, "done")
    r = client.post(
        f"{API}/trials/{done['id']}/complete", json={"worker_id": worker, "values": [1.0]}
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"{API}/trials/{trial['id']}/report", json={"worker_id": worker, "step": 1, "value": 0.5}
    )
    assert r.status_code == 200, r.text
    r = client.post(f"{API}/studies/halted/actions", json={"action": "stop"})
    assert r.json()["state"] == "stopped", r.text
    assert client.get(f"{API}/studies/done").json()["state"] == "completed"
    return World(worker=worker, trial=trial["id"], multi_trial=multi["id"])


Call = Callable[[TestClient, World], httpx.Response]


@dataclass(frozen=True)
class Case:
    id: str
    call: Call
    status: int
    names: tuple[str, ...]  # each must appear in the detail
    code: str | None = None


def _spec(**overrides: Any) -> Call:
    """POST a new study "new" built from the default spec with ``overrides``."""
    return lambda c, _w: c.post(f"{API}/studies", json=make_spec(name="new", **overrides))


def _space(**params: Any) -> Call:
    return _spec(
        search_space={"opt": {"type": "categorical", "choices": ["sgd", "adam"]}, **params}
    )


def _raw_spec(replace: dict[str, str], **overrides: Any) -> Call:
    """The default spec as JSON text with some values swapped for raw text (NaN, Infinity)."""
    raw = json.dumps(make_spec(name="new", **overrides))
    for old, new in replace.items():
        assert old in raw
        raw = raw.replace(old, new, 1)
    return lambda c, _w: c.post(f"{API}/studies", content=raw.encode(), headers=JSON_TYPE)


def _post_raw(path: str, body: str | bytes, headers: dict[str, str] = JSON_TYPE) -> Call:
    data = body.encode() if isinstance(body, str) else body
    return lambda c, _w: c.post(f"{API}{path}", content=data, headers=headers)


def _trial(action: str, body: Callable[[World], dict[str, Any]], *, multi: bool = False) -> Call:
    def call(c: TestClient, w: World) -> httpx.Response:
        trial = w.multi_trial if multi else w.trial
        return c.post(f"{API}/trials/{trial}/{action}", json=body(w))

    return call


def _trial_raw(action: str, template: str) -> Call:
    """A worker call with a raw JSON body; {worker} is the world's worker id."""

    def call(c: TestClient, w: World) -> httpx.Response:
        body = template.replace("{worker}", str(w.worker)).encode()
        return c.post(f"{API}/trials/{w.trial}/{action}", content=body, headers=JSON_TYPE)

    return call


def _chunks(data: bytes) -> Iterator[bytes]:
    """A body without Content-Length: the limit must hold while it streams in."""
    for start in range(0, len(data), 64 * 1024):
        yield data[start : start + 64 * 1024]


def _oversized(path: str, body: dict[str, Any], *, chunked: bool) -> Call:
    data = json.dumps({**body, "pad": "x" * (MIB + 10)}).encode()
    assert len(data) > MIB

    def call(c: TestClient, _w: World) -> httpx.Response:
        content: bytes | Iterator[bytes] = _chunks(data) if chunked else data
        return c.post(f"{API}{path}", content=content, headers=JSON_TYPE)

    return call


UNKNOWN_ID = 999_999

CASES: list[Case] = [
    # -- sampler and pruner ----------------------------------------------------------------
    Case("unknown-sampler", _spec(sampler={"name": "bogus"}), 422, ("sampler.name",)),
    Case("unknown-pruner", _spec(pruner={"name": "bogus"}), 422, ("pruner.name",)),
    Case(
        "unknown-sampler-option",
        _spec(sampler={"name": "tpe", "options": {"bogus": 1}}),
        422,
        ("sampler.options.bogus",),
    ),
    Case(
        "unknown-sampler-option-random",
        _spec(sampler={"name": "random", "options": {"bogus": 1}}),
        422,
        ("sampler.options.bogus",),
    ),
    Case(
        "mistyped-sampler-option",
        _spec(sampler={"name": "tpe", "options": {"n_startup_trials": "many"}}),
        422,
        ("sampler.options.n_startup_trials",),
    ),
    Case(
        "unknown-pruner-option",
        _spec(pruner={"name": "median", "options": {"bogus": 1}}),
        422,
        ("pruner.options.bogus",),
    ),
    Case(
        "non-finite-sampler-option",
        _raw_spec(
            {'"sigma0": 1.5': '"sigma0": Infinity'},
            sampler={"name": "cmaes", "options": {"sigma0": 1.5}},
        ),
        422,
        ("sampler.options.sigma0",),
    ),
    Case(
        "pruner-on-multi-objective",
        _spec(objectives=TWO_OBJECTIVES, pruner={"name": "median"}),
        422,
        ("pruner",),
    ),
    Case(
        "cmaes-on-multi-objective",
        _spec(objectives=TWO_OBJECTIVES, sampler={"name": "cmaes"}),
        422,
        ("sampler",),
    ),
    # -- search space ----------------------------------------------------------------------
    Case(
        "float-low-over-high",
        _space(x={"type": "float", "low": 2.0, "high": 1.0}),
        422,
        ("search_space.x", "low"),
    ),
    Case(
        "int-low-over-high",
        _space(n={"type": "int", "low": 5, "high": 1}),
        422,
        ("search_space.n", "low"),
    ),
    Case(
        "float-log-low-zero",
        _space(x={"type": "float", "low": 0.0, "high": 1.0, "log": True}),
        422,
        ("search_space.x", "log"),
    ),
    Case(
        "float-log-low-negative",
        _space(x={"type": "float", "low": -1.0, "high": 1.0, "log": True}),
        422,
        ("search_space.x", "log"),
    ),
    Case(
        "int-log-low-zero",
        _space(n={"type": "int", "low": 0, "high": 8, "log": True}),
        422,
        ("search_space.n", "log"),
    ),
    Case(
        "non-finite-bound",
        _raw_spec({'"low": -5.0': '"low": NaN'}),
        422,
        ("search_space.x", "low"),
    ),
    Case(
        "empty-choices",
        _space(c={"type": "categorical", "choices": []}),
        422,
        ("search_space.c.choices",),
    ),
    Case(
        "duplicate-choices",
        _space(c={"type": "categorical", "choices": ["a", "b", "a"]}),
        422,
        ("search_space.c.choices",),
    ),
    Case(
        "when-unknown-parent",
        _space(m={"type": "float", "low": 0.0, "high": 1.0, "when": {"ghost": ["sgd"]}}),
        422,
        ("m.when", "ghost"),
    ),
    Case(
        "when-non-categorical-parent",
        _space(
            n={"type": "int", "low": 1, "high": 4},
            m={"type": "float", "low": 0.0, "high": 1.0, "when": {"n": [2]}},
        ),
        422,
        ("m.when", "'n'"),
    ),
    Case(
        "when-value-not-a-choice",
        _space(m={"type": "float", "low": 0.0, "high": 1.0, "when": {"opt": ["rmsprop"]}}),
        422,
        ("m.when", "rmsprop"),
    ),
    Case(
        "when-bool-for-int-choice",
        _spec(
            search_space={
                "k": {"type": "categorical", "choices": [1, 2]},
                "m": {"type": "float", "low": 0.0, "high": 1.0, "when": {"k": [True]}},
            }
        ),
        422,
        ("m.when",),
    ),
    Case(
        "when-cycle",
        _spec(
            search_space={
                "a": {"type": "categorical", "choices": ["x"], "when": {"b": ["y"]}},
                "b": {"type": "categorical", "choices": ["y"], "when": {"a": ["x"]}},
            }
        ),
        422,
        ("cycle",),
    ),
    Case(
        "grid-float-without-step",
        _spec(sampler={"name": "grid"}),
        422,
        ("search_space.x", "step"),
    ),
    Case(
        "non-finite-training-value",
        _raw_spec({'"max_epochs": 5': '"max_epochs": 5, "lr": NaN'}),
        422,
        ("training",),
    ),
    Case(
        "lone-surrogate-in-training",
        _raw_spec({'"digits"': '"\\ud8d3"'}),
        422,
        ("training",),
    ),
    # -- documents -------------------------------------------------------------------------
    Case(
        "duplicate-study-name",
        lambda c, _w: c.post(f"{API}/studies", json=make_spec(sampler={"name": "tpe"})),
        409,
        ("'study'",),
        "study_exists",
    ),
    Case(
        "duplicate-study-name-yaml",
        _post_raw("/studies", yaml.safe_dump(make_spec(budget={"max_trials": 3})), YAML_TYPE),
        409,
        ("'study'",),
        "study_exists",
    ),
    Case("malformed-json", _post_raw("/studies", '{"name": "new",'), 422, ("JSON",)),
    Case(
        "malformed-yaml",
        _post_raw("/studies", "name: new\nobjectives: [\n  - {name: loss\n", YAML_TYPE),
        422,
        ("YAML",),
        "malformed_body",
    ),
    Case("json-array-body", _post_raw("/studies", "[1, 2]"), 422, ("body",)),
    Case("json-string-body", _post_raw("/studies", '"study"'), 422, ("body",)),
    Case("yaml-list-body", _post_raw("/studies", "- a\n- b\n", YAML_TYPE), 422, ("body",)),
    Case("empty-body", _post_raw("/studies", ""), 422, ("body",)),
    Case("claim-array-body", _post_raw("/trials/claim", "[1]"), 422, ("body",)),
    Case("claim-malformed-json", _post_raw("/trials/claim", "{worker_id: 1"), 422, ("JSON",)),
    Case(
        "oversized-study",
        _oversized("/studies", make_spec(name="new"), chunked=False),
        413,
        (),
        "too_large",
    ),
    Case(
        "oversized-study-chunked",
        _oversized("/studies", make_spec(name="new"), chunked=True),
        413,
        (),
        "too_large",
    ),
    Case(
        "oversized-worker",
        _oversized("/workers", {"name": "big", "host": "h"}, chunked=False),
        413,
        (),
        "too_large",
    ),
    Case(
        "oversized-worker-chunked",
        _oversized("/workers", {"name": "big", "host": "h"}, chunked=True),
        413,
        (),
        "too_large",
    ),
    # -- unknown resources -----------------------------------------------------------------
    Case("get-unknown-study", lambda c, _w: c.get(f"{API}/studies/nope"), 404, ("'nope'",)),
    Case(
        "trials-of-unknown-study",
        lambda c, _w: c.get(f"{API}/studies/nope/trials"),
        404,
        ("'nope'",),
        "study_not_found",
    ),
    Case(
        "action-on-unknown-study",
        lambda c, _w: c.post(f"{API}/studies/nope/actions", json={"action": "pause"}),
        404,
        ("'nope'",),
        "study_not_found",
    ),
    Case(
        "delete-unknown-study",
        lambda c, _w: c.delete(f"{API}/studies/nope"),
        404,
        ("'nope'",),
        "study_not_found",
    ),
    Case(
        "enqueue-in-unknown-study",
        lambda c, _w: c.post(f"{API}/studies/nope/trials", json={"params": {"x": 1.0}}),
        404,
        ("'nope'",),
        "study_not_found",
    ),
    Case(
        "claim-from-unknown-study",
        lambda c, w: c.post(f"{API}/trials/claim", json={"worker_id": w.worker, "study": "nope"}),
        404,
        ("'nope'",),
        "study_not_found",
    ),
    Case(
        "report-unknown-trial",
        lambda c, w: c.post(
            f"{API}/trials/{UNKNOWN_ID}/report",
            json={"worker_id": w.worker, "step": 1, "value": 1},
        ),
        404,
        (str(UNKNOWN_ID),),
        "trial_not_found",
    ),
    Case(
        "complete-unknown-trial",
        lambda c, w: c.post(
            f"{API}/trials/{UNKNOWN_ID}/complete", json={"worker_id": w.worker, "values": [1.0]}
        ),
        404,
        (str(UNKNOWN_ID),),
        "trial_not_found",
    ),
    Case(
        "fail-unknown-trial",
        lambda c, w: c.post(
            f"{API}/trials/{UNKNOWN_ID}/fail", json={"worker_id": w.worker, "reason": "boom"}
        ),
        404,
        (str(UNKNOWN_ID),),
        "trial_not_found",
    ),
    Case(
        "get-unknown-trial",
        lambda c, _w: c.get(f"{API}/trials/{UNKNOWN_ID}"),
        404,
        (str(UNKNOWN_ID),),
        "trial_not_found",
    ),
    Case(
        "complete-trial-id-over-int32",
        lambda c, w: c.post(
            f"{API}/trials/{2**31}/complete", json={"worker_id": w.worker, "values": [1.0]}
        ),
        422,  # ids are 32-bit: out of range is invalid input, never a database error
        ("trial_id",),
        "invalid_request",
    ),
    Case(
        "get-trial-id-over-int64",
        lambda c, _w: c.get(f"{API}/trials/{2**63}"),
        422,
        ("trial_id",),
        "invalid_request",
    ),
    Case(
        "claim-unknown-worker",
        lambda c, _w: c.post(f"{API}/trials/claim", json={"worker_id": UNKNOWN_ID}),
        404,
        (str(UNKNOWN_ID),),
        "worker_not_found",
    ),
    Case(
        "claim-worker-id-over-int32",
        lambda c, _w: c.post(f"{API}/trials/claim", json={"worker_id": 2**31}),
        422,
        ("worker_id",),
        "invalid_request",
    ),
    Case(
        "heartbeat-unknown-worker",
        lambda c, _w: c.post(f"{API}/workers/{UNKNOWN_ID}/heartbeat"),
        404,
        (str(UNKNOWN_ID),),
        "worker_not_found",
    ),
    # -- objective values ------------------------------------------------------------------
    Case(
        "complete-nan",
        _trial_raw("complete", '{"worker_id": {worker}, "values": [NaN]}'),
        422,
        ("values",),
    ),
    Case(
        "complete-infinity",
        _trial_raw("complete", '{"worker_id": {worker}, "values": [Infinity]}'),
        422,
        ("values",),
    ),
    Case(
        "complete-minus-infinity",
        _trial_raw("complete", '{"worker_id": {worker}, "values": [-Infinity]}'),
        422,
        ("values",),
    ),
    Case(
        "complete-nan-user-attr",
        _trial_raw(
            "complete", '{"worker_id": {worker}, "values": [1.0], "user_attrs": {"a": NaN}}'
        ),
        422,
        ("user_attrs",),
    ),
    Case(
        "complete-lone-surrogate-user-attr",
        _trial_raw(
            "complete", '{"worker_id": {worker}, "values": [1.0], "user_attrs": {"a": "\\udc00"}}'
        ),
        422,
        ("user_attrs",),
    ),
    Case(
        "report-nan",
        _trial_raw("report", '{"worker_id": {worker}, "step": 2, "value": NaN}'),
        422,
        ("value",),
    ),
    Case(
        "report-infinity",
        _trial_raw("report", '{"worker_id": {worker}, "step": 2, "value": Infinity}'),
        422,
        ("value",),
    ),
    Case(
        "report-negative-step",
        _trial("report", lambda w: {"worker_id": w.worker, "step": -1, "value": 1.0}),
        422,
        ("step",),
    ),
    Case(
        "complete-two-values-for-one-objective",
        _trial("complete", lambda w: {"worker_id": w.worker, "values": [1.0, 2.0]}),
        422,
        ("values",),
    ),
    Case(
        "complete-one-value-for-two-objectives",
        _trial("complete", lambda w: {"worker_id": w.worker, "values": [1.0]}, multi=True),
        422,
        ("values",),
    ),
    Case(
        "complete-three-values-for-two-objectives",
        _trial(
            "complete", lambda w: {"worker_id": w.worker, "values": [1.0, 2.0, 3.0]}, multi=True
        ),
        422,
        ("values",),
    ),
    Case(
        "complete-no-values",
        _trial("complete", lambda w: {"worker_id": w.worker, "values": []}),
        422,
        ("values",),
    ),
    Case(
        "fail-empty-reason",
        _trial("fail", lambda w: {"worker_id": w.worker, "reason": ""}),
        422,
        ("reason",),
    ),
    Case(
        "complete-by-another-worker",
        _trial("complete", lambda w: {"worker_id": w.worker + 1, "values": [1.0]}),
        409,
        (),
        "lease_lost",
    ),
    # -- enqueue ---------------------------------------------------------------------------
    Case(
        "enqueue-float-out-of-range",
        lambda c, _w: c.post(f"{API}/studies/study/trials", json={"params": {"x": 10.0}}),
        422,
        ("params.x",),
    ),
    Case(
        "enqueue-int-out-of-range",
        lambda c, _w: c.post(f"{API}/studies/study/trials", json={"params": {"n": 9}}),
        422,
        ("params.n",),
    ),
    Case(
        "enqueue-int-not-integral",
        lambda c, _w: c.post(f"{API}/studies/study/trials", json={"params": {"n": 2.5}}),
        422,
        ("params.n",),
    ),
    Case(
        "enqueue-bool-for-int",
        lambda c, _w: c.post(f"{API}/studies/study/trials", json={"params": {"n": True}}),
        422,
        ("params.n",),
    ),
    Case(
        "enqueue-not-a-choice",
        lambda c, _w: c.post(f"{API}/studies/study/trials", json={"params": {"opt": "rmsprop"}}),
        422,
        ("params.opt",),
    ),
    Case(
        "enqueue-unknown-param",
        lambda c, _w: c.post(f"{API}/studies/study/trials", json={"params": {"zz": 1}}),
        422,
        ("params.zz",),
    ),
    Case(
        "enqueue-nan",
        _post_raw("/studies/study/trials", '{"params": {"x": NaN}}'),
        422,
        ("params.x",),
    ),
    Case(
        "enqueue-no-params",
        lambda c, _w: c.post(f"{API}/studies/study/trials", json={"params": {}}),
        422,
        ("params",),
    ),
    Case(
        "enqueue-in-completed-study",
        lambda c, _w: c.post(f"{API}/studies/done/trials", json={"params": {"x": 1.0}}),
        409,
        ("'done'", "completed"),
        "invalid_state",
    ),
    Case(
        "enqueue-in-stopped-study",
        lambda c, _w: c.post(f"{API}/studies/halted/trials", json={"params": {"x": 1.0}}),
        409,
        ("'halted'", "stopped"),
        "invalid_state",
    ),
    # -- study actions ---------------------------------------------------------------------
    Case(
        "pause-completed-study",
        lambda c, _w: c.post(f"{API}/studies/done/actions", json={"action": "pause"}),
        409,
        ("'done'", "completed"),
        "invalid_state",
    ),
    Case(
        "pause-stopped-study",
        lambda c, _w: c.post(f"{API}/studies/halted/actions", json={"action": "pause"}),
        409,
        ("'halted'", "stopped"),
        "invalid_state",
    ),
    Case(
        "resume-running-study",
        lambda c, _w: c.post(f"{API}/studies/study/actions", json={"action": "resume"}),
        409,
        ("'study'", "running"),
        "invalid_state",
    ),
    Case(
        "stop-completed-study",
        lambda c, _w: c.post(f"{API}/studies/done/actions", json={"action": "stop"}),
        409,
        ("'done'",),
        "invalid_state",
    ),
    Case(
        "unknown-action",
        lambda c, _w: c.post(f"{API}/studies/study/actions", json={"action": "explode"}),
        422,
        ("action",),
    ),
    # -- lists and workers -----------------------------------------------------------------
    Case(
        "studies-limit-zero",
        lambda c, _w: c.get(f"{API}/studies", params={"limit": 0}),
        422,
        ("limit",),
    ),
    Case(
        "studies-limit-huge",
        lambda c, _w: c.get(f"{API}/studies", params={"limit": 100_000}),
        422,
        ("limit",),
    ),
    Case(
        "studies-negative-offset",
        lambda c, _w: c.get(f"{API}/studies", params={"offset": -1}),
        422,
        ("offset",),
    ),
    Case(
        "trials-limit-zero",
        lambda c, _w: c.get(f"{API}/studies/study/trials", params={"limit": 0}),
        422,
        ("limit",),
    ),
    Case(
        "trials-limit-huge",
        lambda c, _w: c.get(f"{API}/studies/study/trials", params={"limit": 100_000}),
        422,
        ("limit",),
    ),
    Case(
        "trials-unknown-sort",
        lambda c, _w: c.get(f"{API}/studies/study/trials", params={"sort": "bogus"}),
        422,
        ("sort",),
    ),
    Case(
        "register-empty-name",
        lambda c, _w: c.post(f"{API}/workers", json={"name": "", "host": "h"}),
        422,
        ("name",),
    ),
    Case(
        "register-zero-slots",
        lambda c, _w: c.post(f"{API}/workers", json={"name": "w2", "host": "h", "slots": 0}),
        422,
        ("slots",),
    ),
    Case(
        "claim-unknown-field",
        lambda c, w: c.post(f"{API}/trials/claim", json={"worker_id": w.worker, "bogus": 1}),
        422,
        ("bogus",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_and_writes_nothing(
    client: TestClient, database_url: str, world: World, case: Case
) -> None:
    before = _snapshot(database_url)
    r = case.call(client, world)
    assert r.status_code == case.status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and set(body) >= {"code", "detail"}, body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    if case.code is not None:
        assert body["code"] == case.code, body
    for name in case.names:
        assert name in body["detail"], body
    after = _snapshot(database_url)
    assert after == before, f"{case.id} wrote to the database"


def test_duplicate_name_keeps_the_first_study(client: TestClient) -> None:
    first = _created(client, budget={"max_trials": 7})
    r = client.post(
        f"{API}/studies", json=make_spec(sampler={"name": "tpe"}, budget={"max_trials": 99})
    )
    assert r.status_code == 409, r.text
    kept = client.get(f"{API}/studies/study").json()
    assert kept["id"] == first["id"]
    assert kept["spec"] == first["spec"]
    assert kept["spec"]["budget"]["max_trials"] == 7
    assert client.get(f"{API}/studies").json()["total"] == 1


@pytest.mark.parametrize(
    "content_type", ["application/yaml", "application/x-yaml", "text/yaml; charset=utf-8"]
)
def test_yaml_spec_equals_the_same_spec_as_json(client: TestClient, content_type: str) -> None:
    spec = make_spec(
        name="from-yaml",
        sampler={"name": "tpe", "seed": 7, "options": {"n_startup_trials": 3}},
        pruner={"name": "median", "options": {"n_warmup_steps": 2}},
    )
    r_yaml = client.post(
        f"{API}/studies",
        content=yaml.safe_dump(spec).encode(),
        headers={"content-type": content_type},
    )
    assert r_yaml.status_code == 201, r_yaml.text
    r_json = client.post(f"{API}/studies", json={**spec, "name": "from-json"})
    assert r_json.status_code == 201, r_json.text
    from_yaml, from_json = r_yaml.json()["spec"], r_json.json()["spec"]
    assert from_yaml == {**from_json, "name": "from-yaml"}
    # what is stored reads back the same way
    stored = client.get(f"{API}/studies/from-yaml").json()["spec"]
    assert stored == from_yaml
    assert stored["search_space"]["momentum"]["when"] == {"opt": ["sgd"]}
    assert stored["sampler"] == {"name": "tpe", "seed": 7, "options": {"n_startup_trials": 3}}


def test_partial_enqueue_in_a_grid_study_is_refused_or_served(client: TestClient) -> None:
    """Optuna's grid sampler needs every parameter of an enqueued trial: either the enqueue is
    refused (422, nothing written) or the next claim serves it; claims must not break."""
    r = client.post(f"{API}/studies", json=grid_spec(points=20))
    assert r.status_code == 201, r.text
    worker = register(client)
    r = client.post(f"{API}/studies/grid/trials", json={"params": {"a": 3}})
    if r.status_code == 422:
        assert "params" in r.json()["detail"]
        assert client.get(f"{API}/studies/grid").json()["n_trials"] == 0
    else:
        assert r.status_code == 201, r.text
    claim = client.post(f"{API}/trials/claim", json={"worker_id": worker, "study": "grid"})
    assert claim.status_code == 200, claim.text
    if r.status_code == 201:
        assert claim.json()["params"]["a"] == 3
