"""Optuna's percentile pruner (and the median pruner, its 50th percentile), remembering each
step's percentile over the completed trials.

Optuna's ``PercentilePruner.prune`` collects every completed trial's value at the reported step
and takes their percentile on each call: one pass over the completed trials and a numpy
percentile per report, the largest share of a report's CPU in the server once a study has a
few hundred trials. That percentile depends only on the completed trials, whose intermediate
values never change after they complete, so it is computed once per step for each set of
completed trials and kept until another trial completes. The decision is Optuna's, step for
step (``tests/unit/test_percentile_pruner.py`` compares them on random studies).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from optuna.pruners import PercentilePruner
from optuna.pruners._percentile import (
    _get_best_intermediate_result_over_steps,
    _get_percentile_intermediate_result_over_trials,
    _is_first_in_interval_step,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from optuna import Study


class RememberingPercentilePruner(PercentilePruner):
    """``optuna.pruners.PercentilePruner``, with each step's percentile computed once per set of
    completed trials (``MedianPruner`` is this at the 50th percentile)."""

    def __init__(self, percentile: float, **options: int) -> None:
        super().__init__(percentile, **options)
        self._completed_key: tuple[int, int, StudyDirection] | None = None
        self._at_step: dict[int, float] = {}

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        # Optuna's PercentilePruner.prune, but for where the percentile comes from.
        completed_trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        n_trials = len(completed_trials)
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
        p = self._percentile_at(completed_trials, direction, step)
        if math.isnan(p):
            return False
        if direction == StudyDirection.MAXIMIZE:
            return best_intermediate_result < p
        return best_intermediate_result > p

    def _percentile_at(
        self, completed_trials: list[FrozenTrial], direction: StudyDirection, step: int
    ) -> float:
        # Trials only ever join the completed ones, so their count names the set; the last
        # one's id is there in case the pruner is ever asked about another study.
        key = (len(completed_trials), completed_trials[-1]._trial_id, direction)
        if key != self._completed_key:
            self._completed_key, self._at_step = key, {}
        p = self._at_step.get(step)
        if p is None:
            p = self._at_step[step] = _get_percentile_intermediate_result_over_trials(
                completed_trials, direction, step, self._percentile, self._n_min_trials
            )
        return p
