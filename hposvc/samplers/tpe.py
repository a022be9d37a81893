"""Optuna's TPE sampler, remembering what it reads off each finished trial.

Every ask, ``TPESampler._sample`` splits all of the study's finished trials into a good and a
bad group and reads each trial's parameters in their internal form, twice (once per group):
per trial, Python calls that parse the trial's constraints out of its system attributes, find
its last intermediate value when it was pruned, and convert every parameter. At a few hundred
trials that is about a third of an ask, and it grows with the study. A finished trial never
changes, so this sampler works each of these out once per finished trial and keeps it; an ask
then only sorts and gathers what it kept. Trials still running (which ``constant_liar`` puts in
the bad group) are read afresh on every ask, as Optuna does.

What is kept belongs to the trial object the storage handed out: ``InMemoryStorage`` (the
server's study cache) hands out the same object for a finished trial every time, so the kept
values are used; another storage hands out new objects, and this sampler then does what Optuna
does. The samples are Optuna's, bit for bit (``tests/unit/test_tpe_sampler.py`` asks both
samplers side by side on random studies). ``_sample``, ``_split`` and ``_estimator`` follow
``TPESampler._sample``, ``_split_trials`` and ``_build_parzen_estimator`` of optuna 5.0.0 (the
version pyproject.toml pins); that test is what says whether another version still agrees.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.samplers import TPESampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.sampler import (
    _get_infeasible_trial_score,
    _get_pruned_trial_score,
    _split_complete_trials_multi_objective,
    default_gamma,
    default_gamma_multiobjective,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hposvc.samplers import log_ndtr
from hposvc.samplers.mixture_log_pdf import acquisition

if TYPE_CHECKING:
    from optuna import Study
    from optuna.distributions import BaseDistribution

_Space = tuple[tuple[str, "BaseDistribution"], ...]


class _Seen:
    """What TPE reads off one trial: kept while the trial is finished, read afresh each ask
    while it runs."""

    __slots__ = ("trial", "number", "value", "infeasible", "pruned_score", "internal")

    def __init__(self, trial: FrozenTrial, study: Study) -> None:
        self.trial = trial
        self.number = trial.number
        self.value: float | None = None
        self.infeasible = 0.0
        self.pruned_score: tuple[float, float] | None = None
        if trial.state == TrialState.COMPLETE and len(study.directions) == 1:
            self.value = trial.value
        elif trial.state == TrialState.PRUNED:
            self.pruned_score = _get_pruned_trial_score(trial, study)
        if trial.state != TrialState.RUNNING:  # a running trial's constraints are not set yet
            self.infeasible = _get_infeasible_trial_score(trial)
        # The trial's parameters in internal form, per search space (``_space_index``); None
        # where the trial lacks one of the space's parameters.
        self.internal: dict[int, tuple[float, ...] | None] = {}


class RememberingTPESampler(TPESampler):
    """``optuna.samplers.TPESampler`` with what it reads off finished trials kept."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        log_ndtr.install()  # the same floats as optuna's, sooner (hposvc/samplers/log_ndtr.py)
        self._finished: dict[int, _Seen] = {}
        self._spaces: list[_Space] = []

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # TPESampler._sample, with the split and the Parzen estimators' observations taken
        # from what is kept (``_split`` and ``_estimator``).
        if self._constant_liar:
            states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING]
        else:
            states = [TrialState.COMPLETE, TrialState.PRUNED]
        use_cache = not self._constant_liar
        trials = study._get_trials(deepcopy=False, states=states, use_cache=use_cache)
        if self._constant_liar:
            trials = [t for t in trials if trial.number != t.number]
        if self._gamma is None:
            if len(study.directions) <= 1:
                self._gamma = default_gamma
            else:
                self._gamma = default_gamma_multiobjective
        n = sum(t.state != TrialState.RUNNING for t in trials)
        below, above = self._split(study, trials, self._gamma(n))

        space = self._space_index(search_space)
        mpe_below = self._estimator(study, search_space, space, below, handle_below=True)
        mpe_above = self._estimator(study, search_space, space, above, handle_below=False)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = acquisition(samples_below, mpe_below, mpe_above)  # optuna's, sooner
        ret = TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        return ret

    def _split(
        self, study: Study, trials: list[FrozenTrial], n_below: int
    ) -> tuple[list[_Seen], list[_Seen]]:
        """optuna's ``_split_trials``, on what is kept."""
        complete: list[_Seen] = []
        pruned: list[_Seen] = []
        running: list[_Seen] = []
        infeasible: list[_Seen] = []
        finished = self._finished
        for trial in trials:
            if trial.state == TrialState.RUNNING:
                running.append(_Seen(trial, study))
                continue
            seen = finished.get(trial._trial_id)
            if seen is None or seen.trial is not trial:
                seen = finished[trial._trial_id] = _Seen(trial, study)
            if seen.infeasible > 0:
                infeasible.append(seen)
            elif seen.pruned_score is None:
                complete.append(seen)
            else:
                pruned.append(seen)

        below_complete, above_complete = self._split_complete(study, complete, n_below)
        n_below = max(0, n_below - len(below_complete))
        # Sorted as optuna sorts them (``sorted`` is stable: ties keep the trials' order).
        pruned.sort(key=_pruned_score)
        n_pruned = min(n_below, len(pruned))
        below_pruned, above_pruned = pruned[:n_pruned], pruned[n_pruned:]
        n_below = max(0, n_below - n_pruned)
        infeasible.sort(key=_infeasible_score)
        n_infeasible = min(n_below, len(infeasible))
        below_infeasible = infeasible[:n_infeasible]
        above_infeasible = infeasible[n_infeasible:]

        below = below_complete + below_pruned + below_infeasible
        above = above_complete + above_pruned + above_infeasible + running
        below.sort(key=_number)
        above.sort(key=_number)
        return below, above

    @staticmethod
    def _split_complete(
        study: Study, complete: list[_Seen], n_below: int
    ) -> tuple[list[_Seen], list[_Seen]]:
        n_below = min(n_below, len(complete))
        if len(study.directions) == 1:
            maximize = study.direction == StudyDirection.MAXIMIZE
            ordered = sorted(complete, key=_value, reverse=maximize)
            return ordered[:n_below], ordered[n_below:]
        by_trial = {id(seen.trial): seen for seen in complete}
        below, above = _split_complete_trials_multi_objective(
            [seen.trial for seen in complete], study, n_below
        )
        return [by_trial[id(t)] for t in below], [by_trial[id(t)] for t in above]

    def _space_index(self, search_space: dict[str, BaseDistribution]) -> int:
        space = tuple(search_space.items())
        for i, known in enumerate(self._spaces):
            if known == space:
                return i
        self._spaces.append(space)
        return len(self._spaces) - 1

    def _estimator(
        self,
        study: Study,
        search_space: dict[str, BaseDistribution],
        space: int,
        seen: list[_Seen],
        handle_below: bool,
    ) -> _ParzenEstimator:
        """TPESampler._build_parzen_estimator, its observations gathered from what is kept."""
        rows = []
        for one in seen:
            internal = one.internal
            if space in internal:
                row = internal[space]
            else:
                row = internal[space] = self._internal_row(one.trial, search_space, study)
            if row is not None:
                rows.append(row)
        columns: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in search_space]
        observations = {
            name: np.asarray(column) for name, column in zip(search_space, columns, strict=True)
        }
        if handle_below and study._is_multi_objective():
            weights_below = np.ones(len(rows))
            return self._parzen_estimator_cls(
                observations, search_space, self._parzen_estimator_parameters, weights_below
            )
        return self._parzen_estimator_cls(
            observations, search_space, self._parzen_estimator_parameters
        )

    def _internal_row(
        self, trial: FrozenTrial, search_space: dict[str, BaseDistribution], study: Study
    ) -> tuple[float, ...] | None:
        params = self._get_params(trial, study)
        if not search_space.keys() <= params.keys():
            return None
        return tuple(dist.to_internal_repr(params[name]) for name, dist in search_space.items())


_number = attrgetter("number")
_value = attrgetter("value")
_pruned_score = attrgetter("pruned_score")
_infeasible_score = attrgetter("infeasible")
