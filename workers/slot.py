"""One slot: a child process that pulls trials, trains them and reports back.

Signals: SIGTERM or SIGINT set the stop event; the running trial stops after its current
epoch, once that epoch's checkpoint is on the server, and is handed back. The daemon kills
the process on a second signal.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from hposvc.schemas.trials import ClaimedTrial, NextClaim
from workers.client import LeaseLost, ServerClient, ServerUnreachable
from workers.devices import Slot
from workers.settings import WorkerSettings
from workers.training.pruning import (
    QueuedReports,
    TrialPruned,
    background_thread,
    report_thread,
)

logger = logging.getLogger(__name__)


class WorkerStopping(Exception):  # noqa: N818
    """The worker is shutting down: hand the trial back."""


class ServerReporter:
    """Reports each epoch's objective; the server's answer says whether to prune.

    ``checkpoint_follows``: the trial's code checkpoints when the worker stops (the built-in
    loop does, at the end of the epoch). Otherwise a stopping worker hands the trial back at
    its first report if it never checkpointed: no checkpoint would come.

    ``queued``: reports go out in order on a background thread and ``report`` returns at once
    (for a study without a pruner, whose answers can only say go on). A report's error
    surfaces at the next report or at :meth:`flush`, which runs before the trial ends.

    ``next_claim``: sent with each report, so the report that prunes the trial also claims
    the slot's next trial (``next_trial``), unless the worker is stopping by then.
    """

    def __init__(
        self,
        client: ServerClient,
        trial: ClaimedTrial,
        worker_id: int,
        stop: Any,
        store: ServerCheckpointStore,
        *,
        checkpoint_follows: bool = False,
        queued: bool = False,
        next_claim: NextClaim | None = None,
    ) -> None:
        self.client, self.trial, self.worker_id = client, trial, worker_id
        self.stop, self.store = stop, store
        self.checkpoint_follows = checkpoint_follows
        self._queue = QueuedReports() if queued else None
        self.next_claim = None if queued else next_claim  # queued reports never prune
        self.next_trial: ClaimedTrial | None = None

    def report(self, step: int, value: float) -> bool:
        if not math.isfinite(value):
            return False  # the loop raises TrainingDiverged; the trial fails with its reason
        if self._queue is not None:
            pruned = self._queue.send(
                partial(self.client.report, self.trial.id, self.worker_id, step, value)
            )
        elif self.next_claim is not None and not self.stop.is_set():
            pruned, next_trial = self.client.report_then_claim(
                self.trial.id, self.worker_id, step, value, self.next_claim
            )
            if next_trial is not None:
                self.next_trial = next_trial
        else:
            pruned = self.client.report(self.trial.id, self.worker_id, step, value)
        if (
            self.stop.is_set()
            and not pruned
            and not self.checkpoint_follows
            and not self.store.saved
        ):
            raise WorkerStopping  # no checkpoint will come: stop at this report
        return pruned

    def flush(self) -> None:
        """Wait until the queued reports are on the server.

        Raises:
            LeaseLost: the server said so to one of them.
            TrialPruned: one was answered with prune (a study without a pruner never is).
            Exception: what one of them raised.
        """
        if self._queue is not None and self._queue.flush():
            raise TrialPruned("pruned by the server at a queued report")

    def drain(self) -> None:
        """Wait for the queued reports, dropping their errors (the trial ends with another)."""
        if self._queue is not None:
            self._queue.drain()


class ServerCheckpointStore:
    """Checkpoints go to the server; a retry resumes from the last one.

    A save while the worker is stopping raises WorkerStopping once the upload is done, so the
    trial is handed back right after its last checkpoint. For the built-in loop ``run_one``
    wraps this store in a BackgroundCheckpointStore: other saves upload while training goes on.
    """

    def __init__(
        self, client: ServerClient, trial: ClaimedTrial, worker_id: int, stop: Any
    ) -> None:
        self.client, self.trial, self.worker_id, self.stop = client, trial, worker_id, stop
        self.saved = 0

    def save(self, state: bytes) -> None:
        self.client.upload(self.trial.id, self.worker_id, "checkpoint", state)
        self.saved += 1
        if self.stop.is_set():
            raise WorkerStopping

    def load(self) -> bytes | None:
        if self.trial.attempt == 1:
            return None
        return self.client.download(self.trial.id, "checkpoint")

    def requested(self) -> bool:
        return bool(self.stop.is_set())


class LeaseKeeper:
    """Heartbeats while a trial runs, often enough for the study's lease.

    One thread per slot process (:meth:`shared`), started at its first trial and kept:
    entering and leaving a trial only hands it the trial's client and interval. Starting and
    joining a thread per trial waited up to a scheduler tick (~4 ms) on a busy machine.
    """

    _shared: tuple[int, LeaseKeeper] | None = None  # (pid, keeper): a fork needs its own
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._job: tuple[ServerClient, int, float] | None = None  # client, worker, interval
        self._thread = threading.Thread(target=self._run, daemon=True, name="lease-keeper")
        self._thread.start()

    @classmethod
    def shared(cls) -> LeaseKeeper:
        with cls._shared_lock:
            if cls._shared is None or cls._shared[0] != os.getpid():
                cls._shared = (os.getpid(), cls())
            return cls._shared[1]

    @contextmanager
    def holding(
        self, client: ServerClient, worker_id: int, lease_seconds: float
    ) -> Iterator[None]:
        """Beat every lease/4 (0.2 to 10 s) from now until the block ends."""
        job = (client, worker_id, max(0.2, min(10.0, lease_seconds / 4)))
        with self._cond:
            self._job = job
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._job = None
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None)
                job = self._job
                assert job is not None
                # one interval, unless the trial ends (or another starts) first
                if self._cond.wait_for(lambda j=job: self._job is not j, timeout=job[2]):
                    continue
            client, worker_id, _ = job
            try:
                client.heartbeat(worker_id)
            except Exception:  # the next beat retries; the trial's own calls surface errors
                logger.warning("heartbeat failed", exc_info=True)


def _training_config(
    trial: ClaimedTrial, client: ServerClient, workdir: Callable[[], Path]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The study's training section and the trial's params as the core takes them.

    ``init_checkpoint: "trial:<id>"`` warm-starts from another trial's final model (or, if it
    has none, its last checkpoint), fetched from the server.
    """
    training, params = dict(trial.training), dict(trial.params)
    if "entrypoint" not in training and "objective" not in training:
        training["objective"] = [o["name"] for o in trial.objectives]
    source = {**training, **params}.get("init_checkpoint")
    if isinstance(source, str) and source.startswith("trial:"):
        source_id = int(source.removeprefix("trial:"))
        blob = client.download(source_id, "model") or client.download(source_id, "checkpoint")
        if blob is None:
            raise ValueError(f"init_checkpoint: trial {source_id} has no model or checkpoint")
        path = workdir() / f"init-from-trial-{source_id}.pt"
        path.write_bytes(blob)
        training["init_checkpoint"] = str(path)
        params.pop("init_checkpoint", None)
    return training, params


def _result_attrs(result: Any, started: float) -> dict[str, Any]:
    return {
        "metrics": result.metrics,
        "epochs_run": result.epochs_run,
        "stopped": result.stopped,
        "stop_epoch": result.stop_epoch,
        "stop_reason": result.stop_reason,
        "resumed_from_epoch": result.resumed_from_epoch,
        "history": result.history,
        "train_seconds": round(time.monotonic() - started, 3),
    }


@dataclass(frozen=True)
class TrialEnd:
    """What ``run_one`` leaves to the slot.

    ``send_later``: a pruned trial's user attrs, to send once the next trial is in hand.
    ``next_trial``: the slot's next trial, claimed with the report that pruned the trial or
    with its complete (``NextClaim``); None: the slot claims as usual.
    """

    send_later: Callable[[], None] | None = None
    next_trial: ClaimedTrial | None = None


def run_one(
    client: ServerClient,
    trial: ClaimedTrial,
    worker_id: int,
    slot: Slot,
    stop: Any,
    next_claim: NextClaim | None = None,
) -> TrialEnd:
    """Train one claimed trial and tell the server how it ended.

    The built-in loop's final model uploads while the test split is evaluated and the last
    report's answer comes (a trial that answer prunes has uploaded its model: the server
    keeps it); complete follows the upload, so a completed trial's model is on the server
    when complete is answered. A pruned trial is already finished on the server: its user
    attrs (history, metrics) are returned as a send for later, which the slot makes once its
    next claim is answered, while the next trial trains (sent with the claim, they delayed
    its answer).

    Kept cheap around the training (the target is <= 3% of wall time outside it): the
    built-in loop's report goes out while the next epoch trains, and checkpoints come every
    ``checkpoint_every_seconds`` and upload in the background; only a stopping worker's last
    checkpoint uploads synchronously. User objectives checkpoint synchronously and report
    synchronously, unless the study has no pruner (``trial.prunes`` false): then their
    reports are queued and go out in order while the objective goes on; they are all on the
    server before the trial completes, fails or is handed back.

    ``next_claim``: the slot's next claim, sent with the report that prunes the trial or with
    its complete, so the answer brings the next trial (None: the slot claims no more).

    Returns:
        The send of a pruned trial's attrs (it logs its own errors), and the next trial.
    """
    # torch loads in the slot process only
    from workers.training.checkpoint import BackgroundCheckpointStore
    from workers.training.loop import TrainingDiverged
    from workers.training.runner import run_trial

    built_in = "entrypoint" not in trial.training and "entrypoint" not in trial.params
    store = ServerCheckpointStore(client, trial, worker_id, stop)
    # The built-in loop trains on while its checkpoint uploads; a user objective's
    # save_checkpoint() stays synchronous: the checkpoint is on the server when it returns.
    uploads = BackgroundCheckpointStore(store) if built_in else None
    model_upload: Future[None] | None = None

    def upload_model(blob: bytes) -> None:  # while the last report's answer comes, and the
        nonlocal model_upload  # test split is evaluated: on a thread of its own
        pool = background_thread("model-upload")
        model_upload = pool.submit(client.upload, trial.id, worker_id, "model", blob)

    reporter = ServerReporter(
        client,
        trial,
        worker_id,
        stop,
        store,
        checkpoint_follows=built_in,
        queued=not built_in and not trial.prunes,
        next_claim=next_claim,
    )
    started = time.monotonic()
    logger.info(
        "slot %d: trial %d (study %s, attempt %d)",
        slot.index,
        trial.number,
        trial.study,
        trial.attempt,
    )
    keeper = LeaseKeeper.shared()
    with keeper.holding(client, worker_id, trial.lease_seconds), ExitStack() as scratch:

        def workdir() -> Path:  # made on first use: most trials need none
            return Path(scratch.enter_context(TemporaryDirectory()))

        try:
            training, params = _training_config(trial, client, workdir)
            try:
                result = run_trial(
                    training,
                    params,
                    reporter,
                    uploads or store,
                    slot.device,
                    overlap_reports=True,
                    model_ready=upload_model if built_in else None,
                )
            except BaseException:
                reporter.drain()  # queued reports reach the server before fail or release
                if model_upload is not None:
                    model_upload.exception()  # waits; the trial ends without it anyway
                raise
            finally:
                if uploads is not None:
                    uploads.close()  # a checkpoint still waiting is of no use after the run
            reporter.flush()  # every report is on the server before complete; raises as they did
        except WorkerStopping:
            client.release(trial.id, worker_id, "worker shutting down")
            logger.info("slot %d: trial %d handed back", slot.index, trial.number)
            return TrialEnd(next_trial=reporter.next_trial)
        except LeaseLost as exc:
            logger.warning("slot %d: trial %d lost its lease: %s", slot.index, trial.number, exc)
            return TrialEnd(next_trial=reporter.next_trial)
        except Exception as exc:
            # Diverged training diverges again with the same parameters: no retry for it.
            retry = not isinstance(exc, TrainingDiverged)
            reason = traceback.format_exc()
            client.fail(trial.id, worker_id, reason, {"slot": slot.index}, retry=retry)
            logger.warning("slot %d: trial %d failed", slot.index, trial.number, exc_info=True)
            return TrialEnd(next_trial=reporter.next_trial)
        attrs = {**_result_attrs(result, started), "slot": slot.index, "device": slot.device}
        if result.stopped == "pruned":
            if model_upload is not None:  # pruned by the last report, its model went meanwhile
                model_upload.exception()  # waits; the trial keeps no model all the same
            return TrialEnd(
                partial(_send_attrs, client, trial, worker_id, attrs), reporter.next_trial
            )
        bad = [v for v in result.values if not math.isfinite(v)]
        if bad or len(result.values) != len(trial.objectives):
            names = [o["name"] for o in trial.objectives]
            if model_upload is not None:
                model_upload.exception()  # waits; the trial fails without it
            client.fail(
                trial.id,
                worker_id,
                f"objective values {result.values} do not match objectives {names}",
                attrs,
            )
            return TrialEnd(next_trial=reporter.next_trial)
        if model_upload is not None:
            model_upload.result()  # raises as a synchronous upload would
        elif result.model_state is not None:
            client.upload(trial.id, worker_id, "model", result.model_state)
        # No next claim while stopping, nor when a user objective went on after the report
        # that pruned it: that report claimed the next trial.
        ask = None if stop.is_set() or reporter.next_trial is not None else next_claim
        next_trial = client.complete(trial.id, worker_id, list(result.values), attrs, ask)
    return TrialEnd(next_trial=reporter.next_trial or next_trial)


def _send_attrs(
    client: ServerClient, trial: ClaimedTrial, worker_id: int, attrs: dict[str, Any]
) -> None:
    """A pruned trial's user attrs; the trial itself is already finished on the server."""
    try:
        client.set_user_attrs(trial.id, worker_id, attrs)
    except Exception:
        logger.warning("trial %d: its user attrs were not stored", trial.number, exc_info=True)


def prepare_slot_process(settings: WorkerSettings, slot: Slot, stop: Any) -> None:
    """First thing in a slot process: its GPU, signals, logging and torch's thread count.

    The slot is a fork of the daemon's forkserver, which has imported torch but has neither
    started CUDA nor torch's thread pool (workers/daemon.py), so both follow what is set here.
    """
    if slot.visible_gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.visible_gpu
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # The forkserver blocks SIGTERM (workers/daemon.py); the fork keeps that mask.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    from hposvc.logs import configure_logging

    configure_logging(settings.log_level)
    import numpy as np
    import torch

    torch.set_num_threads(slot.threads)
    # Forks share the forkserver's torch generator: without this, unseeded trials would draw
    # the same numbers in every slot (spawned slots each seeded their own at import). Python's
    # random reseeds itself after a fork; numpy's global state is reseeded here to be sure.
    torch.seed()
    np.random.seed()


def slot_main(settings: WorkerSettings, worker_id: int, slot: Slot, stop: Any) -> None:
    """Entry point of a slot process."""
    prepare_slot_process(settings, slot, stop)
    client = ServerClient(
        settings.server_url,
        settings.token,
        unreachable_timeout=settings.unreachable_timeout_seconds,
    )
    done, idle_since = 0, time.monotonic()
    later: Callable[[], None] | None = None  # a pruned trial's attrs: sent after the next claim
    sent: Future[None] | None = None  # the last of them, going out on the report thread
    # The claim's idempotency key, new once a claim got a trial. The slot's next claim goes
    # out with the request that ends its trial (NextClaim); when that answer brings no trial,
    # the slot claims with the same key, which replays one the server did claim.
    request_id = uuid.uuid4().hex
    next_trial: ClaimedTrial | None = None
    try:
        while not stop.is_set():
            if settings.max_trials is not None and done >= settings.max_trials:
                return
            if next_trial is not None:
                trial, next_trial = next_trial, None
            else:
                try:
                    trial = client.claim(worker_id, settings.study, request_id)
                except ServerUnreachable:
                    logger.error("slot %d: server unreachable, giving up", slot.index)
                    return
                except LeaseLost as exc:  # the key's trial ended meanwhile: claim anew
                    logger.warning("slot %d: claim %s: %s", slot.index, request_id, exc)
                    request_id = uuid.uuid4().hex
                    continue
            if later is not None:  # in order, before the next trial's reports
                sent, later = report_thread().submit(later), None
            if trial is None:
                limit = settings.exit_when_idle_seconds
                if limit is not None and time.monotonic() - idle_since > limit:
                    return
                stop.wait(settings.poll_seconds)
                continue
            request_id = uuid.uuid4().hex
            more = settings.max_trials is None or done + 1 < settings.max_trials
            next_claim = NextClaim(study=settings.study, request_id=request_id) if more else None
            end = run_one(client, trial, worker_id, slot, stop, next_claim)
            later, next_trial = end.send_later, end.next_trial
            if next_trial is not None:
                request_id = uuid.uuid4().hex
            done += 1
            idle_since = time.monotonic()
    finally:
        if next_trial is not None:  # claimed as the worker began to stop: hand it back
            try:
                client.release(next_trial.id, worker_id, "worker shutting down")
            except Exception:
                logger.warning("trial %d: not handed back", next_trial.number, exc_info=True)
        if later is not None:
            later()
        if sent is not None:
            sent.result()
        client.close()
