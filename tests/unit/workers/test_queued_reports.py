"""Queued reports of a user objective in a study without a pruner (``ClaimedTrial.prunes``
false): the objective does not wait for the answers, the reports reach the server in order
before the trial ends, and their errors end the trial as a synchronous report's would
(workers/slot.py, workers/training/pruning.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.unit.workers.test_slot_run_one import SLOT, FakeClient, _trial
from workers.client import LeaseLost, RequestRejected
from workers.slot import ServerCheckpointStore, ServerReporter, run_one
from workers.training.pruning import QueuedReports

USER_CODE = "tests/e2e/objectives.py:flaky"  # reports steps 1..3, returns x * 3


class GatedClient(FakeClient):
    """Holds every report until ``gate`` opens."""

    def __init__(self, stop: threading.Event, **kw: Any) -> None:
        super().__init__(stop, **kw)
        self.gate = threading.Event()

    def report(self, *args: Any) -> bool:
        assert self.gate.wait(10)
        return super().report(*args)


def _reporter(client: FakeClient, *, queued: bool) -> ServerReporter:
    trial = _trial({"entrypoint": USER_CODE}).model_copy(update={"prunes": not queued})
    store = ServerCheckpointStore(client, trial, 3, client.stop)  # type: ignore[arg-type]
    return ServerReporter(client, trial, 3, client.stop, store, queued=queued)  # type: ignore[arg-type]


def _run_user(client: FakeClient, *, prunes: bool) -> None:
    trial = _trial({"entrypoint": USER_CODE}).model_copy(
        update={"params": {"mode": "ok", "x": 0.5}, "prunes": prunes}
    )
    run_one(client, trial, 3, SLOT, client.stop)  # type: ignore[arg-type]


def test_queued_reports_return_before_the_server_answers_and_flush_waits_for_all() -> None:
    client = GatedClient(threading.Event())
    reporter = _reporter(client, queued=True)
    assert [reporter.report(step, 1.0) for step in (1, 2, 3)] == [False] * 3
    assert client.steps() == []  # none answered yet: the caller did not wait
    client.gate.set()
    reporter.flush()
    assert client.steps() == [1, 2, 3]


def test_synchronous_reports_wait_for_the_answer() -> None:
    client = GatedClient(threading.Event())
    reporter = _reporter(client, queued=False)
    threading.Timer(0.05, client.gate.set).start()
    reporter.report(1, 1.0)
    assert client.steps() == [1]


def test_a_queued_report_error_surfaces_at_the_next_report() -> None:
    client = FakeClient(threading.Event(), fail_at=(1, LeaseLost("trial 7 is not held")))
    reporter = _reporter(client, queued=True)
    reporter.report(1, 1.0)
    with pytest.raises(LeaseLost):  # at a later report, once report 1 is answered
        for step in range(2, 200):
            reporter.report(step, 1.0)
            time.sleep(0.005)
    assert client.steps()[0] == 1 and len(client.steps()) < 199


def test_a_queued_prune_answer_is_returned_by_the_next_send() -> None:
    queue = QueuedReports()
    assert queue.send(lambda: True) is False
    queue._pending[0].result()
    assert queue.send(lambda: False) is True
    assert queue.flush() is False  # the reports after a prune were dropped


def test_a_user_objective_without_pruner_completes_after_all_its_reports() -> None:
    client = FakeClient(threading.Event())
    _run_user(client, prunes=False)
    assert client.names() == ["report", "report", "report", "complete"]
    assert client.steps() == [1, 2, 3]
    assert client.calls[-1][1] == [1.5]


@pytest.mark.parametrize("at", [1, 3])
def test_a_lease_lost_by_a_queued_report_ends_the_trial_quietly(at: int) -> None:
    client = FakeClient(threading.Event(), fail_at=(at, LeaseLost("trial 7 is not held")))
    _run_user(client, prunes=False)
    assert "complete" not in client.names() and "fail" not in client.names()


@pytest.mark.parametrize("at", [1, 3])
def test_a_rejected_queued_report_fails_the_trial_after_the_reports(at: int) -> None:
    client = FakeClient(threading.Event(), fail_at=(at, RequestRejected(422, "bad step")))
    _run_user(client, prunes=False)
    names = client.names()
    assert names[-1] == "fail" and "complete" not in names
    assert "bad step" in client.calls[-1][1]
