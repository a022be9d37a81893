"""Dashboard reads through the API: charts, the sortable table, exports, pages and assets."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import make_spec, register

KINDS = ("history", "intermediate", "parallel", "importance", "slice", "contour", "timeline")


def _run_trials(client: TestClient, n: int = 5) -> list[dict]:
    r = client.post("/api/v1/studies", json=make_spec(budget={"max_trials": 20}))
    assert r.status_code == 201, r.text
    worker = register(client)
    done = []
    for i in range(n):
        t = client.post("/api/v1/trials/claim", json={"worker_id": worker}).json()
        for step in range(1, 4):
            body = {"worker_id": worker, "step": step, "value": 1.0 / step + i}
            client.post(f"/api/v1/trials/{t['id']}/report", json=body)
        attrs = {"stopped": "early_stopped" if i == 0 else "completed", "metrics": {"val_x": i}}
        body = {"worker_id": worker, "values": [float(i)], "user_attrs": attrs}
        assert client.post(f"/api/v1/trials/{t['id']}/complete", json=body).status_code == 200
        done.append(t)
    return done


def test_every_chart_is_optunas_figure(client: TestClient) -> None:
    _run_trials(client)
    for kind in KINDS:
        r = client.get(f"/api/v1/studies/study/charts/{kind}")
        assert r.status_code == 200, (kind, r.text)
        figure = r.json()
        assert figure["data"], kind
        assert "layout" in figure
    names = [
        t["name"] for t in client.get("/api/v1/studies/study/charts/intermediate").json()["data"]
    ]
    assert "Trial0 (early-stopped)" in names


def test_charts_are_cached_per_version_and_redrawn_after_a_change(client: TestClient) -> None:
    _run_trials(client, 3)
    first = client.get("/api/v1/studies/study/charts/history").json()
    assert client.get("/api/v1/studies/study/charts/history").json() == first
    enqueued = client.post("/api/v1/studies/study/trials", json={"params": {"x": 1.0}})
    assert enqueued.status_code == 201
    worker = register(client)
    t = client.post("/api/v1/trials/claim", json={"worker_id": worker}).json()
    body = {"worker_id": worker, "values": [-10.0]}
    client.post(f"/api/v1/trials/{t['id']}/complete", json=body)
    again = client.get("/api/v1/studies/study/charts/history").json()
    assert len(again["data"][0]["x"]) == len(first["data"][0]["x"]) + 1


def test_charts_that_do_not_apply_answer_409(client: TestClient) -> None:
    client.post("/api/v1/studies", json=make_spec())
    assert client.get("/api/v1/studies/study/charts/history").status_code == 409
    assert client.get("/api/v1/studies/study/charts/pareto").json()["code"] == (
        "chart_not_applicable"
    )
    assert client.get("/api/v1/studies/study/charts/nope").status_code == 404
    assert client.get("/api/v1/studies/missing/charts/history").status_code == 404


def test_pareto_front_of_two_objectives(client: TestClient) -> None:
    spec = make_spec(
        objectives=[
            {"name": "loss", "direction": "minimize"},
            {"name": "size", "direction": "minimize"},
        ]
    )
    client.post("/api/v1/studies", json=spec)
    worker = register(client)
    for i in range(4):
        t = client.post("/api/v1/trials/claim", json={"worker_id": worker}).json()
        body = {"worker_id": worker, "values": [float(i), float(4 - i)]}
        client.post(f"/api/v1/trials/{t['id']}/complete", json=body)
    r = client.get("/api/v1/studies/study/charts/pareto")
    assert r.status_code == 200 and r.json()["data"]
    assert client.get("/api/v1/studies/study/charts/intermediate").status_code == 409


@pytest.mark.parametrize("sort", ["params.x", "duration", "worker_id", "value", "values.0"])
def test_table_sorts_by_any_column(client: TestClient, sort: str) -> None:
    _run_trials(client)
    page = client.get(
        "/api/v1/studies/study/table", params={"sort": sort, "order": "desc", "limit": 3}
    ).json()
    assert page["total"] == 5 and len(page["items"]) == 3
    if sort == "params.x":
        xs = [t["params"]["x"] for t in page["items"]]
        assert xs == sorted(xs, reverse=True)
    if sort in ("value", "values.0"):
        assert [t["values"][0] for t in page["items"]] == [4.0, 3.0, 2.0]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_table_puts_missing_values_last_and_breaks_ties_by_number(
    client: TestClient, order: str
) -> None:
    client.post("/api/v1/studies", json=make_spec(budget={"max_trials": 20}))
    worker = register(client)
    for value in (2.0, 1.0, 2.0, None):  # trial 3 fails: it has no value
        t = client.post("/api/v1/trials/claim", json={"worker_id": worker}).json()
        if value is None:
            body = {"worker_id": worker, "reason": "boom", "retry": False}
            assert client.post(f"/api/v1/trials/{t['id']}/fail", json=body).status_code == 200
        else:
            body = {"worker_id": worker, "values": [value]}
            assert client.post(f"/api/v1/trials/{t['id']}/complete", json=body).status_code == 200
    page = client.get(
        "/api/v1/studies/study/table", params={"sort": "values.0", "order": order}
    ).json()
    numbers = [t["number"] for t in page["items"]]
    assert numbers == ([1, 0, 2, 3] if order == "asc" else [2, 0, 1, 3])


def _table_key(sort: str, trial: dict) -> Any:
    """What a table sort orders ``trial`` by, computed here from the trial as the API reads it."""
    if sort == "duration":
        if not (trial["started_at"] and trial["finished_at"]):
            return None
        start, end = (datetime.fromisoformat(trial[k]) for k in ("started_at", "finished_at"))
        return (end - start).total_seconds()
    if sort.startswith("params."):
        return trial["params"].get(sort[7:])
    if sort.startswith("values."):
        return (trial["values"] or [None])[int(sort[7:])]
    return trial[sort]


def test_table_pages_sorted_by_computed_columns_agree_with_the_trials(client: TestClient) -> None:
    """Pages of 5 of a sort, in order, are the trials sorted by that column: values first, in
    order, ties by number in the sort's direction; trials without a value last."""
    client.post("/api/v1/studies", json=make_spec(budget={"max_trials": 20}))
    workers = [register(client, name=f"w{i}") for i in range(2)]
    for i in range(13):
        worker = workers[i % 2]
        t = client.post("/api/v1/trials/claim", json={"worker_id": worker}).json()
        for step in range(1, i % 4 + 1):
            body = {"worker_id": worker, "step": step, "value": float(step)}
            client.post(f"/api/v1/trials/{t['id']}/report", json=body)
        if i % 5 == 4:  # failed: no value
            body = {"worker_id": worker, "reason": "boom", "retry": False}
            assert client.post(f"/api/v1/trials/{t['id']}/fail", json=body).status_code == 200
        elif i < 11:  # trials 11 and 12 stay running: no value, no duration
            body = {"worker_id": worker, "values": [float(i % 3)]}  # ties in the value
            assert client.post(f"/api/v1/trials/{t['id']}/complete", json=body).status_code == 200
    everything = client.get("/api/v1/studies/study/table", params={"limit": 100}).json()["items"]
    assert len(everything) == 13
    assert any("momentum" not in t["params"] for t in everything)  # a conditional parameter
    sorts = ["params.x", "params.n", "params.opt", "params.momentum", "values.0", "duration"]
    for sort in [*sorts, "worker_id", "last_step", "attempt"]:
        for order in ("asc", "desc"):
            got = []
            for offset in range(0, 15, 5):
                query = {"sort": sort, "order": order, "limit": 5, "offset": offset}
                r = client.get("/api/v1/studies/study/table", params=query)
                assert r.status_code == 200, (sort, r.text)
                assert r.json()["total"] == 13
                got += r.json()["items"]
            known = [t for t in everything if _table_key(sort, t) is not None]
            missing = [t for t in everything if _table_key(sort, t) is None]
            descending = order == "desc"
            known.sort(key=lambda t: (_table_key(sort, t), t["number"]), reverse=descending)
            missing.sort(key=lambda t: t["number"], reverse=descending)
            if sort == "duration":  # the database may round a duration to the millisecond
                keys = [_table_key(sort, t) for t in got[: len(known)]]
                steps = [
                    b - a if not descending else a - b
                    for a, b in zip(keys, keys[1:], strict=False)
                ]
                assert min(steps) > -0.002, (order, keys)
                assert [t["number"] for t in got[len(known) :]] == [t["number"] for t in missing]
                continue
            expected = [t["number"] for t in known + missing]
            assert [t["number"] for t in got] == expected, (sort, order)


def test_table_refuses_a_sort_by_a_name_no_parameter_can_have(client: TestClient) -> None:
    _run_trials(client, 1)
    for sort in (
        'params.a"b',
        "params.",
        "values.x",
        "values.-1",
        "values.1",
        "values.2" + "0" * 20,
    ):
        r = client.get("/api/v1/studies/study/table", params={"sort": sort})
        assert r.status_code == 422 and "sort" in r.json()["detail"], sort


def test_table_refuses_an_unknown_column(client: TestClient) -> None:
    _run_trials(client, 1)
    r = client.get("/api/v1/studies/study/table", params={"sort": "nope"})
    assert r.status_code == 422 and "sort" in r.json()["detail"]


def test_export_csv_and_json(client: TestClient) -> None:
    _run_trials(client, 3)
    r = client.get("/api/v1/studies/study/export", params={"format": "csv"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["number"] for row in rows] == ["0", "1", "2"]
    assert rows[0]["stopped"] == "early_stopped" and rows[2]["loss"] == "2.0"
    assert rows[1]["metric_val_x"] == "1"
    data = client.get("/api/v1/studies/study/export", params={"format": "json"}).json()
    assert [t["number"] for t in data] == [0, 1, 2]


def test_pages_and_assets_are_served_by_hposvc(client: TestClient) -> None:
    for path in ("/", "/studies/study", "/trials/1", "/workers", "/new"):
        r = client.get(path)
        assert r.status_code == 200 and "<main>" in r.text, path
        assert "http://" not in r.text and "https://" not in r.text  # no CDN
    page = client.get("/studies/<b>x").text
    assert "<b>x" not in page  # names are escaped
    src = page.split('PLOTLY_URL = "')[1].split('"')[0]
    js = client.get(src)
    assert js.status_code == 200 and "immutable" in js.headers["cache-control"]
    assert len(js.content) > 1_000_000
    for asset in ("app.js", "study.js", "app.css"):
        assert client.get(f"/static/{asset}").status_code == 200
