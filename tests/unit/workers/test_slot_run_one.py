"""run_one against a fake server client: reports overlapped with training, checkpoints on a
cadence and in the background, the synchronous last checkpoint of a stopping worker, and the
errors of a background report, and when a pruned trial's attrs go out (workers/slot.py)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from hposvc.schemas.trials import ClaimedTrial
from workers import slot
from workers.client import LeaseLost, RequestRejected
from workers.devices import Slot
from workers.settings import WorkerSettings
from workers.slot import run_one
from workers.training.checkpoint import from_bytes
from workers.training.loop import TrainingDiverged

IRIS = {"dataset": "iris", "model": "mlp", "width": 16, "batch_size": 32, "max_epochs": 6}
SLOT = Slot(index=0, device="cpu", visible_gpu=None, threads=1)


class FakeClient:
    """Records the worker's calls; answers reports as told; keeps uploads for a retry."""

    def __init__(
        self,
        stop: threading.Event,
        *,
        prune_at: int | None = None,
        stop_at: int | None = None,
        fail_at: tuple[int, Exception] | None = None,
    ) -> None:
        self.stop, self.prune_at, self.stop_at, self.fail_at = stop, prune_at, stop_at, fail_at
        self.calls: list[tuple[str, Any]] = []
        self.uploads: dict[str, list[bytes]] = {}
        self.attrs: dict[str, Any] = {}

    def names(self) -> list[str]:
        return [name for name, _ in self.calls if name != "heartbeat"]

    def steps(self) -> list[int]:
        return [arg for name, arg in self.calls if name == "report"]

    def report(self, _trial_id: int, _worker_id: int, step: int, _value: float) -> bool:
        self.calls.append(("report", step))
        if self.fail_at is not None and step == self.fail_at[0]:
            raise self.fail_at[1]
        if step == self.stop_at:
            self.stop.set()
        return step == self.prune_at

    def report_then_claim(
        self, trial_id: int, worker_id: int, step: int, value: float, next_claim: Any
    ) -> tuple[bool, ClaimedTrial | None]:
        pruned = self.report(trial_id, worker_id, step, value)
        return pruned, self.claim_next(next_claim) if pruned else None

    def claim_next(self, _next_claim: Any) -> ClaimedTrial | None:
        """The trial a request that ends a trial claims with it (none here)."""
        return None

    def upload(self, _trial_id: int, _worker_id: int, kind: str, data: bytes) -> None:
        self.calls.append(("upload", kind))
        self.uploads.setdefault(kind, []).append(data)

    def download(self, _trial_id: int, kind: str) -> bytes | None:
        return self.uploads[kind][-1] if self.uploads.get(kind) else None

    def complete(
        self, _t: int, _w: int, values: list[float], user_attrs: dict, next_claim: Any = None
    ) -> ClaimedTrial | None:
        self.calls.append(("complete", values))
        self.attrs = user_attrs
        return None if next_claim is None else self.claim_next(next_claim)

    def set_user_attrs(self, _t: int, _w: int, user_attrs: dict[str, Any]) -> None:
        self.calls.append(("set_user_attrs", None))
        self.attrs = user_attrs

    def fail(
        self, _t: int, _w: int, reason: str, _attrs: dict[str, Any], *, retry: bool = True
    ) -> None:
        self.calls.append(("fail", reason))
        self.retry = retry

    def release(self, _t: int, _w: int, reason: str) -> None:
        self.calls.append(("release", reason))

    def heartbeat(self, _worker_id: int) -> None:
        self.calls.append(("heartbeat", None))


def _trial(training: dict[str, Any], attempt: int = 1) -> ClaimedTrial:
    return ClaimedTrial(
        id=7,
        study="s",
        study_id=1,
        number=0,
        params={"lr": 0.01},
        training=training,
        attempt=attempt,
        retry_of=None if attempt == 1 else 6,
        lease_expires_at=datetime.now(UTC),
        lease_seconds=300,
        objectives=[{"name": "val_accuracy", "direction": "maximize"}],
    )


def _run(client: FakeClient, training: dict[str, Any], attempt: int = 1) -> None:
    end = run_one(client, _trial(training, attempt), 3, SLOT, client.stop)  # type: ignore[arg-type]
    if end.send_later is not None:  # a pruned trial's attrs, sent once the next claim is answered
        end.send_later()


def test_a_completed_trial_reports_every_epoch_and_uploads_no_checkpoint_by_default() -> None:
    client = FakeClient(threading.Event())
    _run(client, IRIS)
    assert client.steps() == [1, 2, 3, 4, 5, 6]
    assert client.names()[-2:] == ["upload", "complete"]
    assert list(client.uploads) == ["model"]  # 30 s cadence: a short trial takes none
    assert client.attrs["stopped"] == "completed"


def test_checkpoint_every_epoch_uploads_in_the_background_newest_first() -> None:
    client = FakeClient(threading.Event())
    _run(client, {**IRIS, "checkpoint_every_seconds": 0})
    epochs = [from_bytes(blob)["epoch"] for blob in client.uploads["checkpoint"]]
    assert 1 <= len(epochs) <= 6 and epochs == sorted(epochs)  # waiting ones may be dropped
    assert client.names()[-1] == "complete"


def test_a_pruned_trial_stops_at_the_answered_epoch() -> None:
    client = FakeClient(threading.Event(), prune_at=2)
    end = run_one(client, _trial(IRIS), 3, SLOT, client.stop)  # type: ignore[arg-type]
    assert end.send_later is not None  # the attrs go out once the slot's next claim is answered
    assert client.names()[-1] == "report"
    end.send_later()
    assert client.steps() == [1, 2]
    assert client.names()[-1] == "set_user_attrs"
    assert (client.attrs["stopped"], client.attrs["stop_epoch"]) == ("pruned", 2)
    assert [h["epoch"] for h in client.attrs["history"]] == [1, 2]


def test_a_stopping_worker_checkpoints_synchronously_then_hands_back_and_the_retry_resumes():
    client = FakeClient(threading.Event(), stop_at=2)
    _run(client, IRIS)
    names = client.names()
    assert names[-2:] == ["upload", "release"] and "complete" not in names
    assert len(client.uploads["checkpoint"]) == 1  # the hand-back one; the cadence took none
    saved = from_bytes(client.uploads["checkpoint"][0])["epoch"]
    assert saved in (2, 3)  # stop came with report 2, seen at the end of epoch 2 or 3
    assert client.steps() == list(range(1, saved + 1))

    retry = FakeClient(threading.Event())
    retry.uploads = client.uploads
    _run(retry, IRIS, attempt=2)
    assert retry.steps() == list(range(saved + 1, 7))
    assert retry.attrs["resumed_from_epoch"] == saved
    assert retry.names()[-1] == "complete"


@pytest.mark.parametrize("at", [1, 3])
def test_a_lease_lost_by_a_background_report_ends_the_trial_quietly(at: int) -> None:
    client = FakeClient(threading.Event(), fail_at=(at, LeaseLost("trial 7 is not held")))
    _run(client, IRIS)
    assert client.names()[-1] == "report" and client.steps()[-1] == at


def test_a_rejected_background_report_fails_the_trial() -> None:
    client = FakeClient(threading.Event(), fail_at=(2, RequestRejected(422, "bad step")))
    _run(client, IRIS)
    assert client.names()[-1] == "fail" and client.steps() == [1, 2]
    assert "RequestRejected" in client.calls[-1][1] and "bad step" in client.calls[-1][1]


def test_only_a_failure_that_would_repeat_asks_for_no_retry() -> None:
    diverged = FakeClient(threading.Event(), fail_at=(2, TrainingDiverged("loss is nan")))
    _run(diverged, IRIS)
    assert diverged.names()[-1] == "fail" and diverged.retry is False
    crashed = FakeClient(threading.Event(), fail_at=(2, RuntimeError("CUDA error")))
    _run(crashed, IRIS)
    assert crashed.names()[-1] == "fail" and crashed.retry is True


def _run_user(client: FakeClient, entrypoint: str, params: dict[str, Any]) -> None:
    trial = _trial({"entrypoint": entrypoint}).model_copy(update={"params": params})
    run_one(client, trial, 3, SLOT, client.stop)  # type: ignore[arg-type]


def test_a_user_objective_is_handed_back_after_its_synchronous_checkpoint() -> None:
    client = FakeClient(threading.Event(), stop_at=2)
    user_code = "tests/unit/training/training_user_code.py:objective"
    _run_user(client, user_code, {"x": 0.5, "steps": 5})
    # it checkpoints after every step: the save after step 2 uploads at once, then hand-back
    assert client.steps() == [1, 2]
    assert client.names()[-2:] == ["upload", "release"]
    assert from_bytes(client.uploads["checkpoint"][-1], trusted=True) == {"step": 2}


def test_a_user_objective_that_never_checkpoints_is_handed_back_at_its_report() -> None:
    client = FakeClient(threading.Event(), stop_at=1)
    _run_user(client, "tests/e2e/objectives.py:flaky", {"mode": "ok", "x": 0.5})
    assert client.steps() == [1]
    assert client.names()[-1] == "release" and "checkpoint" not in client.uploads


class SlowUploadClient(FakeClient):
    """Records when the model upload starts and ends, and when complete comes."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__(stop)
        self.events: list[str] = []
        self.uploading = threading.Event()

    def upload(self, *args: Any) -> None:
        self.events.append("upload starts")
        self.uploading.set()
        time.sleep(0.2)
        super().upload(*args)
        self.events.append("upload ends")

    def complete(self, *args: Any) -> None:
        self.events.append("complete")
        super().complete(*args)


def test_the_model_uploads_during_the_test_evaluation_and_before_complete(monkeypatch) -> None:
    import workers.training.runner as runner

    evaluated: list[str] = []
    real = runner.evaluate

    def evaluate(*args: Any, **kw: Any) -> dict[str, float]:
        client.uploading.wait(5)  # never set before the evaluation ends, if it waited for it
        evaluated.append(client.events[-1] if client.events else "nothing")
        return real(*args, **kw)

    monkeypatch.setattr(runner, "evaluate", evaluate)
    client = SlowUploadClient(threading.Event())
    _run(client, {**IRIS, "test_fraction": 0.2})
    assert evaluated == ["upload starts"]  # the test split is evaluated while it uploads
    assert client.events == ["upload starts", "upload ends", "complete"]
    assert from_bytes(client.uploads["model"][0])  # the final model
    assert "test_accuracy" in client.attrs["metrics"]


class ClaimingClient(FakeClient):
    """Hands out the given trials, then none."""

    def __init__(self, stop: threading.Event, trials: list[ClaimedTrial], **kw: Any) -> None:
        super().__init__(stop, **kw)
        self.trials = trials

    def claim(self, _worker_id: int, _study: str | None, request_id: str) -> ClaimedTrial | None:
        self.calls.append(("claim", request_id))
        return self.trials.pop(0) if self.trials else None

    def claim_next(self, next_claim: Any) -> ClaimedTrial | None:
        self.calls.append(("claim with it", next_claim.request_id))
        return self.trials.pop(0) if self.trials else None

    def close(self) -> None:
        pass


def test_a_pruned_trials_attrs_go_out_after_the_next_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = ClaimingClient(threading.Event(), [_trial(IRIS), _trial(IRIS)], prune_at=2)
    monkeypatch.setattr(slot, "ServerClient", lambda *_a, **_k: client)
    monkeypatch.setattr(slot, "prepare_slot_process", lambda *_a: None)
    slot.slot_main(WorkerSettings(max_trials=2), 3, SLOT, client.stop)
    # the report that prunes claims the next trial; the attrs then precede the next trial's
    # reports on the report thread; the last trial's go out before the slot exits
    assert client.names() == [
        "claim",
        "report",
        "report",
        "claim with it",
        "set_user_attrs",
        "report",
        "report",  # the slot's last trial (max_trials): it claims nothing more
        "set_user_attrs",
    ]


def test_a_complete_brings_the_next_trial_and_the_slot_runs_it_without_a_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = _trial(IRIS), _trial(IRIS).model_copy(update={"id": 8, "number": 1})
    client = ClaimingClient(threading.Event(), [first, second])
    monkeypatch.setattr(slot, "ServerClient", lambda *_a, **_k: client)
    monkeypatch.setattr(slot, "prepare_slot_process", lambda *_a: None)
    slot.slot_main(WorkerSettings(max_trials=2), 3, SLOT, client.stop)
    names = client.names()
    assert names.count("claim") == 1 and names.count("claim with it") == 1
    assert names.index("claim with it") == names.index("complete") + 1  # with the complete
    assert names[-1] == "complete"  # the last trial asks for nothing more


def test_with_no_trial_in_the_answer_the_slot_claims_with_the_same_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = ClaimingClient(threading.Event(), [_trial(IRIS)])
    monkeypatch.setattr(slot, "ServerClient", lambda *_a, **_k: client)
    monkeypatch.setattr(slot, "prepare_slot_process", lambda *_a: None)
    settings = WorkerSettings(max_trials=2, exit_when_idle_seconds=0.01, poll_seconds=0.01)
    slot.slot_main(settings, 3, SLOT, client.stop)
    claims = [(name, key) for name, key in client.calls if name.startswith("claim")]
    first, with_complete, after = claims[:3]
    assert first[0] == "claim" and with_complete[0] == "claim with it" and after[0] == "claim"
    assert after[1] == with_complete[1] != first[1]  # a claim the server made is replayed


def test_a_next_trial_that_comes_as_the_worker_stops_is_handed_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class StopsOnComplete(ClaimingClient):
        def claim_next(self, next_claim: Any) -> ClaimedTrial | None:
            self.stop.set()  # the signal arrives while the complete is answered
            return super().claim_next(next_claim)

    second = _trial(IRIS).model_copy(update={"id": 8, "number": 1})
    client = StopsOnComplete(threading.Event(), [_trial(IRIS), second])
    monkeypatch.setattr(slot, "ServerClient", lambda *_a, **_k: client)
    monkeypatch.setattr(slot, "prepare_slot_process", lambda *_a: None)
    slot.slot_main(WorkerSettings(), 3, SLOT, client.stop)
    assert client.names()[-3:] == ["complete", "claim with it", "release"]
    assert client.steps() == [1, 2, 3, 4, 5, 6]  # the second trial never ran


class LastAnswerAfterUploadClient(FakeClient):
    """Answers the report of epoch ``last`` only once the model upload has started (prune or
    not as told), so a slot that uploaded only after that answer would wait here in vain."""

    def __init__(self, stop: threading.Event, last: int, *, prune: bool) -> None:
        super().__init__(stop, prune_at=last if prune else None)
        self.last = last
        self.uploading = threading.Event()
        self.waited: bool | None = None

    def report(self, trial_id: int, worker_id: int, step: int, value: float) -> bool:
        if step == self.last:
            self.waited = self.uploading.wait(10)
        return super().report(trial_id, worker_id, step, value)

    def upload(self, *args: Any) -> None:
        self.uploading.set()
        super().upload(*args)


@pytest.mark.parametrize("prune", [False, True], ids=["completed", "pruned at the last report"])
def test_the_model_uploads_while_the_last_report_is_answered(prune: bool) -> None:
    """The final model goes up on its own thread while the last report waits for its answer;
    complete comes after both. Pruned by that answer, the trial ends pruned (its model is on
    the server all the same)."""
    client = LastAnswerAfterUploadClient(threading.Event(), 3, prune=prune)
    _run(client, {**IRIS, "max_epochs": 3})
    assert client.waited is True
    assert client.uploads["model"] and from_bytes(client.uploads["model"][0])
    if prune:
        assert "complete" not in client.names() and client.attrs["stopped"] == "pruned"
    else:
        assert client.names()[-1] == "complete" and client.attrs["stopped"] == "completed"
