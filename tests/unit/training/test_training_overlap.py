"""What keeps a trial cheap around its training: reports overlapped with the next epoch,
checkpoints on a time cadence, and checkpoint saves in the background."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from training_helpers import IRIS, ScriptedReporter

from workers.training import loop
from workers.training.checkpoint import (
    BackgroundCheckpointStore,
    InMemoryCheckpointStore,
    from_bytes,
)
from workers.training.config import TrainConfig
from workers.training.data import load_data
from workers.training.loop import fit
from workers.training.losses import output_dim
from workers.training.models import build_model
from workers.training.pruning import NullReporter
from workers.training.runner import run_trial

DIGITS_MLP = {"dataset": "digits", "model": "mlp", "width": 16, "layers": 1, "batch_size": 8}
_TIMINGS = ("train_seconds", "validation_seconds", "samples_per_second")


def _without_timings(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k not in _TIMINGS} for h in history]


# -- reports overlapped with the next epoch ------------------------------------------------


@pytest.mark.parametrize("overlap", [False, True])
def test_a_prune_answer_stops_the_trial_at_the_reported_epoch(overlap: bool) -> None:
    reporter = ScriptedReporter(prune_at=3)
    result = run_trial(IRIS, {"max_epochs": 10}, reporter, None, overlap_reports=overlap)
    assert (result.stopped, result.stop_epoch, result.epochs_run) == ("pruned", 3, 3)
    assert [step for step, _ in reporter.reports] == [1, 2, 3]
    assert [h["epoch"] for h in result.history] == [1, 2, 3]  # epoch 4 (partial) discarded
    assert result.stop_reason.startswith("pruned by the server at epoch 3 (val_accuracy ")
    assert not any(k.startswith("test_") for k in result.metrics)


def test_overlapped_reports_train_exactly_what_synchronous_ones_do() -> None:
    config = {**IRIS, "max_epochs": 6}
    plain, overlapped = NullReporter(), NullReporter()
    sync = run_trial(config, {}, plain, None)
    over = run_trial(config, {}, overlapped, None, overlap_reports=True)
    assert overlapped.reports == plain.reports
    assert _without_timings(over.history) == _without_timings(sync.history)
    assert over.values == sync.values and over.stopped == sync.stopped == "completed"


class _LateAnswer:
    """Answers step ``prune_at`` with prune only once the next epoch has run ``after`` batches."""

    def __init__(self, batches: list[bool], prune_at: int, after: int) -> None:
        self.batches, self.prune_at, self.after = batches, prune_at, after
        self.steps: list[int] = []

    def report(self, step: int, value: float) -> bool:  # noqa: ARG002
        self.steps.append(step)
        if step != self.prune_at:
            return False
        started = len(self.batches)
        deadline = time.monotonic() + 30
        while len(self.batches) < started + self.after and time.monotonic() < deadline:
            time.sleep(0.001)
        return True


def test_the_epoch_after_a_prune_stops_at_the_next_batch_and_is_discarded() -> None:
    cfg = TrainConfig.from_dict({**DIGITS_MLP, "max_epochs": 5})
    data = load_data(cfg, "cpu")
    cfg = cfg.with_task_defaults(data.task)
    model = build_model(cfg, data.input_shape, output_dim(cfg, data))
    batches: list[bool] = []  # one entry per training forward pass
    model.register_forward_hook(lambda m, _i, _o: batches.append(True) if m.training else None)
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)
    reporter = _LateAnswer(batches, prune_at=2, after=5)
    result = fit(model, data, cfg, reporter=reporter, overlap_reports=True)
    assert (result.stopped, result.stop_epoch, result.epochs_run) == ("pruned", 2, 2)
    assert reporter.steps == [1, 2]
    assert [h["epoch"] for h in result.history] == [1, 2]
    partial = len(batches) - 2 * steps_per_epoch  # epoch 3 trained while the answer came
    assert 5 <= partial < steps_per_epoch // 2


def test_an_error_of_a_background_report_surfaces_in_the_trial() -> None:
    reporter = ScriptedReporter(crash_at=2)
    with pytest.raises(ConnectionError, match="worker lost"):
        run_trial({**IRIS, "max_epochs": 10}, {}, reporter, None, overlap_reports=True)
    assert [step for step, _ in reporter.reports] == [1]


def test_a_failed_last_report_is_not_swallowed() -> None:
    with pytest.raises(ConnectionError):
        run_trial(IRIS, {}, ScriptedReporter(crash_at=3), None, overlap_reports=True)


def test_the_last_epochs_prune_answer_is_awaited_before_the_trial_ends() -> None:
    result = run_trial(IRIS, {}, ScriptedReporter(prune_at=3), None, overlap_reports=True)
    assert (result.stopped, result.stop_epoch) == ("pruned", 3)


def test_prune_wins_over_early_stopping_at_the_same_epoch() -> None:
    config = {**IRIS, "lr": 1e-9, "max_epochs": 10, "early_stopping": {"patience": 2}}
    assert run_trial(config, {}, NullReporter(), None).stop_epoch == 3  # early stops at 3
    result = run_trial(config, {}, ScriptedReporter(prune_at=3), None, overlap_reports=True)
    assert (result.stopped, result.stop_epoch) == ("pruned", 3)


# -- checkpoint cadence ----------------------------------------------------------------------


class _Recording(InMemoryCheckpointStore):
    """Records the epoch of every checkpoint; ``stop_from`` makes it ask for one from then on."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []
        self.stopping = False

    def save(self, state: bytes) -> None:
        super().save(state)
        self.epochs.append(from_bytes(state)["epoch"])

    def requested(self) -> bool:
        return self.stopping


class _Clock:
    """A monotonic clock the reporter moves on by ``per_epoch`` seconds at every report."""

    def __init__(self, per_epoch: float) -> None:
        self.now, self.per_epoch = 0.0, per_epoch

    def report(self, step: int, value: float) -> bool:  # noqa: ARG002
        self.now += self.per_epoch
        return False


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock(per_epoch=10.0)
    monkeypatch.setattr(
        loop, "time", SimpleNamespace(monotonic=lambda: fake.now, perf_counter=time.perf_counter)
    )
    return fake


@pytest.mark.parametrize(
    ("every", "epochs"),
    [(0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), (25, [3, 6, 9]), (30, [3, 6, 9]), (3600, [])],
)
def test_checkpoints_follow_the_time_cadence(clock: _Clock, every: float, epochs: list[int]):
    store = _Recording()
    config = {**IRIS, "max_epochs": 10, "checkpoint_every_seconds": every}
    run_trial(config, {}, clock, store)
    assert store.epochs == epochs


def test_the_default_cadence_is_thirty_seconds(clock: _Clock) -> None:
    assert TrainConfig.from_dict({"dataset": "iris"}).checkpoint_every_seconds == 30
    store = _Recording()
    run_trial({**IRIS, "max_epochs": 7}, {}, clock, store)
    assert store.epochs == [3, 6]
    with pytest.raises(ValueError, match="'checkpoint_every_seconds'"):
        TrainConfig.from_dict({"dataset": "iris", "checkpoint_every_seconds": -1})


class _Stopped(Exception):
    pass


def test_a_requested_checkpoint_comes_at_the_end_of_the_epoch_whatever_the_cadence() -> None:
    store = _Recording()

    class StopAt3(ScriptedReporter):
        def report(self, step: int, value: float) -> bool:
            store.stopping = store.stopping or step == 3
            return super().report(step, value)

    def save_then_stop(state: bytes) -> None:
        _Recording.save(store, state)
        raise _Stopped  # what the worker's store does: hand the trial back after the upload

    store.save = save_then_stop  # type: ignore[method-assign]
    config = {**IRIS, "max_epochs": 10, "checkpoint_every_seconds": 3600}
    with pytest.raises(_Stopped):  # synchronous reports: the request is seen at epoch 3 exactly
        run_trial(config, {}, StopAt3(), store)
    assert store.epochs == [3]
    resumed = run_trial(config, {}, ScriptedReporter(), InMemoryCheckpointStore(store.state))
    assert resumed.resumed_from_epoch == 3 and resumed.epochs_run == 10


def test_a_checkpoint_waits_for_the_answer_to_its_epochs_report() -> None:
    store = _Recording()
    config = {**IRIS, "max_epochs": 10, "checkpoint_every_seconds": 0}
    result = run_trial(config, {}, ScriptedReporter(prune_at=4), store, overlap_reports=True)
    assert result.stop_epoch == 4
    assert store.epochs == [1, 2, 3]  # epoch 4 was pruned: no checkpoint of it


# -- checkpoint saves in the background ------------------------------------------------------


class _Gate(InMemoryCheckpointStore):
    """An inner store whose saves wait for ``release`` and record the thread they ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[bytes] = []
        self.threads: list[str] = []
        self.entered = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.release = threading.Event()
        self.error: Exception | None = None
        self.stopping = False

    def save(self, state: bytes) -> None:
        self.threads.append(threading.current_thread().name)
        self.entered.release()
        try:
            assert self.release.wait(10)
            if self.error is not None:
                raise self.error
            self.saved.append(state)
        finally:
            self.done.release()

    def requested(self) -> bool:
        return self.stopping


def _in_thread(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_background_saves_keep_only_the_newest_waiting_checkpoint() -> None:
    inner = _Gate()
    store = BackgroundCheckpointStore(inner)
    store.save(b"1")
    assert inner.entered.acquire(timeout=10)  # 1 is in flight
    store.save(b"2")
    store.save(b"3")  # replaces 2 before its turn
    inner.release.set()
    store.flush()
    assert inner.saved == [b"1", b"3"]
    assert inner.threads == ["checkpoint-upload"] * 2
    store.close()


def test_a_background_save_error_is_raised_by_the_next_save_and_by_flush() -> None:
    inner = _Gate()
    inner.error = OSError("disk full")
    inner.release.set()
    store = BackgroundCheckpointStore(inner)
    store.save(b"1")
    assert inner.done.acquire(timeout=10)
    with pytest.raises(OSError, match="disk full"):
        store.save(b"2")  # not queued
    inner.error = None
    store.save(b"3")
    store.flush()
    assert inner.saved == [b"3"]
    inner.error = OSError("gone")
    store.save(b"4")
    with pytest.raises(OSError, match="gone"):
        store.flush()
    store.close()


def test_a_requested_save_is_synchronous_after_the_one_in_flight() -> None:
    inner = _Gate()
    store = BackgroundCheckpointStore(inner)
    store.save(b"1")
    assert inner.entered.acquire(timeout=10)
    store.save(b"2")  # waiting behind 1
    inner.stopping = True
    saver = _in_thread(lambda: store.save(b"3"))
    saver.join(0.2)
    assert saver.is_alive()  # waits for 1, which is still in flight
    inner.release.set()
    saver.join(10)
    assert inner.saved == [b"1", b"3"]  # 2 was dropped: 3 is newer
    assert inner.threads[1] != "checkpoint-upload"  # 3 was saved by the caller's thread
    store.close()


def test_a_requested_save_raises_what_the_inner_store_raises() -> None:
    inner = _Gate()
    inner.stopping, inner.error = True, _Stopped()
    inner.release.set()
    store = BackgroundCheckpointStore(inner)
    with pytest.raises(_Stopped):
        store.save(b"1")
    store.close()


def test_close_drops_the_waiting_checkpoint_and_waits_for_the_one_in_flight() -> None:
    inner = _Gate()
    store = BackgroundCheckpointStore(inner)
    store.save(b"1")
    assert inner.entered.acquire(timeout=10)
    store.save(b"2")
    closer = _in_thread(store.close)
    closer.join(0.2)
    assert closer.is_alive()
    inner.release.set()
    closer.join(10)
    assert not closer.is_alive()
    assert inner.saved == [b"1"]
    with pytest.raises(RuntimeError, match="closed"):
        store.save(b"3")


# -- the end of a trial overlaps the answer to its last report ------------------------------


class _SlowLastAnswer:
    """Answers every report at once but the one at ``last``, which waits for ``release``
    (set by the end's work) and then says ``prune``."""

    def __init__(self, last: int, release: threading.Event, *, prune: bool) -> None:
        self.last, self.release, self.prune = last, release, prune
        self.steps: list[int] = []
        self.waited: bool | None = None

    def report(self, step: int, value: float) -> bool:  # noqa: ARG002
        self.steps.append(step)
        if step != self.last:
            return False
        self.waited = self.release.wait(10)
        return self.prune


@pytest.mark.parametrize("prune", [False, True], ids=["kept", "pruned at the last report"])
def test_the_model_and_the_test_split_are_done_while_the_last_answer_comes(
    monkeypatch: pytest.MonkeyPatch, prune: bool
) -> None:
    """The final model goes to ``model_ready`` and the test split is evaluated before the
    answer to the last report is in (it waits for them here); a trial that answer prunes
    keeps neither the model nor the test metrics."""
    import workers.training.runner as runner

    release = threading.Event()
    real = runner.evaluate

    def evaluate(*args: Any, **kw: Any) -> dict[str, float]:
        scores = real(*args, **kw)
        release.set()  # the last report's answer may come now
        return scores

    monkeypatch.setattr(runner, "evaluate", evaluate)
    reporter = _SlowLastAnswer(4, release, prune=prune)
    ready: list[bytes] = []
    config = {**IRIS, "max_epochs": 4, "test_fraction": 0.2}
    result = run_trial(config, {}, reporter, None, overlap_reports=True, model_ready=ready.append)
    assert reporter.waited is True and reporter.steps == [1, 2, 3, 4]
    assert len(ready) == 1 and from_bytes(ready[0])
    if prune:
        assert (result.stopped, result.stop_epoch) == ("pruned", 4)
        assert result.model_state is None
        assert not any(k.startswith("test_") for k in result.metrics)
    else:
        assert result.stopped == "completed" and result.model_state == ready[0]
        assert "test_accuracy" in result.metrics


def test_an_early_stop_overlaps_its_last_answer_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import workers.training.runner as runner

    release = threading.Event()
    real = runner.evaluate

    def evaluate(*args: Any, **kw: Any) -> dict[str, float]:
        release.set()
        return real(*args, **kw)

    monkeypatch.setattr(runner, "evaluate", evaluate)
    config = {**IRIS, "lr": 1e-9, "max_epochs": 10, "early_stopping": {"patience": 2}}
    reporter = _SlowLastAnswer(3, release, prune=False)  # early stops at 3 (see above)
    config["test_fraction"] = 0.2
    result = run_trial(config, {}, reporter, None, overlap_reports=True)
    assert reporter.waited is True
    assert (result.stopped, result.stop_epoch) == ("early_stopped", 3)
    assert "test_accuracy" in result.metrics
