"""The report/prune channel between a running trial and the server."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol


class TrialPruned(Exception):  # noqa: N818 - named like optuna.TrialPruned on purpose
    """Raised inside a user objective when the server prunes the trial."""


class Reporter(Protocol):
    """Sends intermediate objective values to the server."""

    def report(self, step: int, value: float) -> bool:
        """Report the objective at ``step`` (the epoch number, from 1).

        Args:
            step: the epoch (or the user's step) the value belongs to.
            value: the objective value at that step.

        Returns:
            True when the server says the trial should be pruned.

        Raises:
            Exception: whatever the transport raises; the trial then fails.
        """
        ...


class NullReporter:
    """A reporter that records the values and never prunes (local runs, tests)."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, float]] = []

    def report(self, step: int, value: float) -> bool:
        self.reports.append((step, value))
        return False


_threads: dict[str, tuple[int, ThreadPoolExecutor]] = {}  # name: (pid, pool); a fork: its own
_threads_lock = threading.Lock()


def background_thread(name: str) -> ThreadPoolExecutor:
    """The process's one background thread called ``name`` (FIFO: calls run in order).

    Kept across trials (a slot runs one trial at a time), so its HTTP connection is kept too.
    """
    with _threads_lock:
        kept = _threads.get(name)
        if kept is None or kept[0] != os.getpid():
            kept = _threads[name] = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix=name))
        return kept[1]


def report_thread() -> ThreadPoolExecutor:
    """The process's one background thread for reports (FIFO: reports go out in order)."""
    return background_thread("report")


class ReportChannel:
    """How fit() reports each epoch: synchronously, or overlapped with the next epoch.

    Overlapped, epoch k's report goes out on a background thread and epoch k+1 starts at once.
    The loop calls :meth:`stops_epoch` per batch and stops as soon as the answer says prune
    (or the report failed); that partial epoch is discarded, never reported. At most one
    report is in flight: the loop waits for its answer (:meth:`settle`) before the next
    report, before a checkpoint and before the trial ends. The answer is the reporter's (the
    server's Optuna pruner) unchanged; only where the loop waits for it moves.

    Reports go out on :func:`report_thread`.
    """

    def __init__(self, reporter: Reporter, *, overlap: bool) -> None:
        self._reporter = reporter
        self._pool = report_thread() if overlap else None
        self._pending: Future[bool] | None = None
        self._step = 0

    def send(self, step: int, value: float) -> bool:
        """Report ``value`` at ``step``.

        Returns:
            Synchronously, the answer (True: prune). Overlapped, False: :meth:`settle` has it.

        Raises:
            RuntimeError: overlapped, the previous report is not settled yet.
            Exception: synchronously, whatever the reporter raises.
        """
        if self._pool is None:
            return self._reporter.report(step, value)
        if self._pending is not None:
            raise RuntimeError(f"report {self._step} is still in flight; settle() it first")
        self._step = step
        self._pending = self._pool.submit(self._reporter.report, step, value)
        return False

    def stops_epoch(self) -> bool:
        """True once the report in flight is answered with prune, or failed (cheap: per batch)."""
        pending = self._pending
        if pending is None or not pending.done():
            return False
        return pending.exception() is not None or bool(pending.result())

    def settle(self) -> int | None:
        """Wait for the report in flight.

        Returns:
            The step it prunes the trial at, or None (not pruned, or nothing in flight).

        Raises:
            Exception: whatever the reporter raised for it.
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        return self._step if pending.result() else None

    def close(self) -> None:
        """Wait for a report still in flight (its answer and error are dropped)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.exception()  # waits; the error, if any, is the caller's to drop


class QueuedReports:
    """Reports sent in order on :func:`report_thread` without waiting for their answers.

    Only for trials whose reports cannot answer prune (the study has no pruner): the caller
    goes on at once. What a report raised surfaces at the next :meth:`send` or at
    :meth:`flush`, which the caller runs before the trial ends, so every report is on the
    server before the trial completes or fails. An answer that does say prune is returned
    by the next :meth:`send`.
    """

    def __init__(self) -> None:
        self._pool = report_thread()
        self._pending: list[Future[bool]] = []

    def send(self, report: Callable[[], bool]) -> bool:
        """Queue ``report``.

        Returns:
            True when an earlier report's answer said prune.

        Raises:
            Exception: what an earlier report raised.
        """
        pruned = self._settled(wait=False)
        self._pending.append(self._pool.submit(report))
        return pruned

    def flush(self) -> bool:
        """Wait for every queued report.

        Returns:
            True when an answer said prune.

        Raises:
            Exception: what the first failing report raised.
        """
        return self._settled(wait=True)

    def drain(self) -> None:
        """Wait for every queued report; their answers and errors are dropped."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.exception()

    def _settled(self, *, wait: bool) -> bool:
        """Take the answered reports off the queue, in order (all of them when ``wait``)."""
        while self._pending and (wait or self._pending[0].done()):
            future = self._pending.pop(0)
            error = future.exception()
            if error is not None or future.result():
                self.drain()  # the reports after a prune or an error are of no use
                if error is not None:
                    raise error
                return True
        return False
