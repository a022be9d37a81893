"""The report/prune channel between a running trial and the server."""

from __future__ import annotations

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
