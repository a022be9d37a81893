"""Many claimers over real HTTP against real ``hposvc server`` processes.

Each claimer loops claim -> 2 reports -> complete until the server has no work. What must
hold: exactly one trial per grid point, no duplicates, no lost report, no errors, the study
completed. The throughput is printed (run with -s to see it) for the issue notes; it is not
asserted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from tests.factories import grid_spec

N_CLAIMERS = 16
N_POINTS = 120


def _claimer(base_urls: list[str], index: int, seen: list[tuple], errors: list[str]) -> None:
    url = base_urls[index % len(base_urls)]
    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.post(
            "/api/v1/workers", json={"name": f"claimer-{index}", "host": "test", "slots": 1}
        )
        worker = r.json()["id"]
        while True:
            r = http.post("/api/v1/trials/claim", json={"worker_id": worker})
            if r.status_code == 204:
                return
            if r.status_code != 200:
                errors.append(f"claim {r.status_code}: {r.text}")
                return
            trial = r.json()
            seen.append((trial["params"]["a"], trial["params"]["b"], trial["number"]))
            for step in (1, 2):
                r = http.post(
                    f"/api/v1/trials/{trial['id']}/report",
                    json={"worker_id": worker, "step": step, "value": step * 0.5},
                )
                if r.status_code != 200 or r.json()["should_prune"]:
                    errors.append(f"report {r.status_code}: {r.text}")
                    return
            r = http.post(
                f"/api/v1/trials/{trial['id']}/complete",
                json={"worker_id": worker, "values": [trial["params"]["a"] * 0.1]},
            )
            if r.status_code != 200:
                errors.append(f"complete {r.status_code}: {r.text}")
                return


def _run_claimers(urls: list[str]) -> tuple[list[tuple], list[str], float]:
    seen: list[tuple] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_claimer, args=(urls, i, seen, errors)) for i in range(N_CLAIMERS)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return seen, errors, time.perf_counter() - start


def _check(urls: list[str], seen: list[tuple], errors: list[str]) -> None:
    assert errors == []
    points = Counter((a, b) for a, b, _ in seen)
    assert len(seen) == N_POINTS, f"{len(seen)} trials handed out"
    assert max(points.values()) == 1, "a grid point was handed out twice"
    assert len(points) == N_POINTS
    numbers = sorted(n for _, _, n in seen)
    assert numbers == list(range(N_POINTS))
    study = httpx.get(f"{urls[0]}/api/v1/studies/grid").json()
    assert study["state"] == "completed"
    assert study["counts"]["complete"] == N_POINTS
    trials = httpx.get(f"{urls[-1]}/api/v1/studies/grid/trials", params={"limit": 1000}).json()
    assert all(t["last_step"] == 2 for t in trials["items"])  # every report was kept


@pytest.mark.slow
def test_parallel_claimers_on_one_server(database_url: str, start_server) -> None:
    server = start_server(database_url)
    r = httpx.post(f"{server.url}/api/v1/studies", json=grid_spec(points=N_POINTS))
    assert r.status_code == 201, r.text
    seen, errors, elapsed = _run_claimers([server.url])
    backend = database_url.split(":")[0]
    print(  # noqa: T201  (figures for the issue notes, shown with -s)
        f"\n{backend}: {N_POINTS} trials by {N_CLAIMERS} claimers in {elapsed:.2f} s "
        f"= {N_POINTS / elapsed:.1f} trials/s"
    )
    _check([server.url], seen, errors)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_servers_share_one_postgres(postgres_url: str, start_server) -> None:
    from tests.conftest import _truncate

    _truncate(postgres_url)
    first, second = start_server(postgres_url), start_server(postgres_url)
    r = httpx.post(f"{first.url}/api/v1/studies", json=grid_spec(points=N_POINTS))
    assert r.status_code == 201, r.text
    seen, errors, elapsed = _run_claimers([first.url, second.url])
    print(f"\npostgresql, 2 servers: {N_POINTS / elapsed:.1f} trials/s")  # noqa: T201
    _check([first.url, second.url], seen, errors)
