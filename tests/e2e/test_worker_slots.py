"""``hposvc worker`` starts its slots as forks of a warm forkserver (workers/daemon.py)."""

from __future__ import annotations

import os
import signal
import sys
import time

import httpx
import pytest

from tests.factories import objective_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forkserver on Linux only"),
]


def test_a_worker_slot_is_a_forkserver_child_with_its_gpu_and_threads(
    database_url: str, start_server, start_worker
) -> None:
    server = start_server(database_url)
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    spec = objective_spec(
        "probe", "tests/e2e/slot_probe.py:where_am_i", seed=1, budget={"max_trials": 2}
    )
    assert api.post("/studies", json=spec).status_code == 201
    # GPU 3 need not exist: nothing touches CUDA unless the objective does. The worker runs
    # with OMP_NUM_THREADS=1 (conftest); its one slot must still get every core.
    worker = start_worker(server.url, "--devices", "3", "--exit-when-idle", "2")
    assert worker.wait(timeout=120) == 0, worker.log.read_text()[-3000:]

    trials = api.get("/studies/probe/trials").json()["items"]
    assert [t["state"] for t in trials] == ["complete", "complete"]
    for trial in trials:
        m = trial["user_attrs"]["metrics"]
        assert m["parent_pid"] != worker.proc.pid  # not the daemon's child ...
        assert m["grandparent_pid"] == worker.proc.pid  # ... but its forkserver's
        assert m["cuda_visible_devices"] == 3
        assert m["cuda_initialized"] == 0
        assert m["torch_threads"] == os.cpu_count()


def test_sigterm_to_the_whole_process_group_waits_for_the_hand_back(
    database_url: str, start_server, start_worker
) -> None:
    """``kill -TERM -PGID`` (systemd's default) reaches the forkserver too; it must survive,
    or the daemon sees every slot as gone and exits while they still finish their epoch."""
    server = start_server(database_url)
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
    spec = objective_spec(
        "group",
        "tests/e2e/objectives.py:slow_steps",
        seed=4,
        budget={"max_trials": 1, "max_retries": 0, "lease_seconds": 30},
        step_seconds=1.5,
    )
    assert api.post("/studies", json=spec).status_code == 201
    worker = start_worker(server.url)
    deadline = time.monotonic() + 60
    while True:
        items = api.get("/studies/group/trials").json()["items"]
        if items and api.get(f"/trials/{items[0]['id']}").json()["intermediate_values"]:
            break
        assert time.monotonic() < deadline, "the trial never reported"
        time.sleep(0.1)

    os.killpg(worker.proc.pid, signal.SIGTERM)  # the worker leads its own session (conftest)
    assert worker.wait(timeout=30) == 0

    # The daemon waited for its slot: the trial is already handed back when it has exited.
    trial = api.get(f"/trials/{items[0]['id']}").json()
    assert trial["state"] == "fail" and "handed back" in trial["fail_reason"]
