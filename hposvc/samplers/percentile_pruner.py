"""Optuna's percentile pruner (and the median pruner, its 50th percentile), keeping each step's
values over the completed trials, in order, as trials complete.

Optuna's ``PercentilePruner.prune`` filters every trial of the study for the completed ones,
collects their values at the reported step and takes numpy's percentile on each call: two Python
passes over the study and about 0.1 ms of numpy per report, the largest share of a report's CPU
in the server once a study has a few hundred trials, and growing with the study. Completed
trials never change, so this pruner keeps, per study, the completed trials' values for each
step in a sorted list; each call looks only at the trials that were unfinished when it last
looked and at the new ones, and reads the percentile off the sorted values as numpy's linear
method computes it. The decision is Optuna's, step for step
(``tests/unit/test_percentile_pruner.py`` compares them on random studies, and the percentile
with numpy's bit for bit).

The kept values need the study's trials in a list that only grows, as ``InMemoryStorage`` (the
server's study cache) keeps them; on any other storage the pruner filters as Optuna does.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from optuna.pruners import PercentilePruner
from optuna.pruners._percentile import (
    _get_best_intermediate_result_over_steps,
    _get_percentile_intermediate_result_over_trials,
    _is_first_in_interval_step,
)
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from optuna import Study


def linear_percentile(ordered: list[float], percentile: float) -> float:
    """``numpy.percentile(values, percentile)`` (method "linear") of values given sorted,
    computed with numpy's own arithmetic, so the result is the same float."""
    n = len(ordered)
    if n == 0:
        return math.nan
    index = (n - 1) * (percentile / 100)
    if index >= n - 1:
        return ordered[-1]
    below = math.floor(index)
    a, b = ordered[below], ordered[below + 1]
    t = index - below
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t  # numpy's _lerp


class _CompletedTrials:
    """One study's completed trials' intermediate values by step, kept current by looking at
    the trials that were unfinished at the last look and at those added since."""

    def __init__(self) -> None:
        self.count = 0
        self.counts: dict[int, int] = {}  # step -> completed trials with a value there, NaN too
        self.ordered: dict[int, list[float]] = {}  # step -> those values but NaN, sorted
        self.seen = 0  # trials[:seen] were looked at ...
        self._open: list[int] = []  # ... and these of them were not finished then

    def update(self, trials: list[FrozenTrial]) -> None:
        still_open = []
        for i in [*self._open, *range(self.seen, len(trials))]:
            trial = trials[i]
            if trial.state == TrialState.COMPLETE:
                self.count += 1
                for step, value in trial.intermediate_values.items():
                    self.counts[step] = self.counts.get(step, 0) + 1
                    if not math.isnan(value):
                        bisect.insort(self.ordered.setdefault(step, []), value)
            elif not trial.state.is_finished():
                still_open.append(i)
        self._open, self.seen = still_open, len(trials)


class RememberingPercentilePruner(PercentilePruner):
    """``optuna.pruners.PercentilePruner`` that keeps the completed trials' values by step
    (``MedianPruner`` is this at the 50th percentile)."""

    def __init__(self, percentile: float, **options: int) -> None:
        super().__init__(percentile, **options)
        # per storage (gone with it) and study
        self._studies: WeakKeyDictionary[InMemoryStorage, dict[int, _CompletedTrials]] = (
            WeakKeyDictionary()
        )

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        # Optuna's PercentilePruner.prune, but for where the completed trials' values come from.
        completed = self._completed(study)
        filtered: list[FrozenTrial] = []
        if completed is None:
            filtered = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        n_trials = completed.count if completed is not None else len(filtered)
        if n_trials == 0 or n_trials < self._n_startup_trials:
            return False
        step = trial.last_step
        if step is None or step < self._n_warmup_steps:
            return False
        if not _is_first_in_interval_step(
            step, trial.intermediate_values.keys(), self._n_warmup_steps, self._interval_steps
        ):
            return False
        direction = study.direction
        best_intermediate_result = _get_best_intermediate_result_over_steps(trial, direction)
        if math.isnan(best_intermediate_result):
            return True
        if completed is None:
            p = _get_percentile_intermediate_result_over_trials(
                filtered, direction, step, self._percentile, self._n_min_trials
            )
        elif completed.counts.get(step, 0) < self._n_min_trials:
            p = math.nan
        else:
            percentile = self._percentile
            if direction == StudyDirection.MAXIMIZE:
                percentile = 100 - percentile
            p = linear_percentile(completed.ordered.get(step, []), percentile)
        if math.isnan(p):
            return False
        if direction == StudyDirection.MAXIMIZE:
            return best_intermediate_result < p
        return best_intermediate_result > p

    def _completed(self, study: Study) -> _CompletedTrials | None:
        storage = study._storage
        if not isinstance(storage, InMemoryStorage):
            return None
        trials = storage.get_all_trials(study._study_id, deepcopy=False)  # a list copy, no filter
        studies = self._studies.setdefault(storage, {})
        kept = studies.get(study._study_id)
        if kept is None:
            kept = studies[study._study_id] = _CompletedTrials()
        kept.update(trials)
        return kept
