"""Optuna's TPE sampler, remembering what it reads off each finished trial.

Every ask, ``TPESampler._sample`` splits all of the study's finished trials into a good and a
bad group and reads each trial's parameters in their internal form, twice (once per group):
per trial, Python calls that parse the trial's constraints out of its system attributes, find
its last intermediate value when it was pruned, and convert every parameter. At a few hundred
trials that is about a third of an ask, and it grows with the study. A finished trial never
changes, so this sampler works each of these out once per finished trial and keeps it, one row
per trial in numpy arrays (``_Kept``, and ``_Rows`` per search space); an ask then sorts and
gathers the rows with numpy, not trial by trial in Python. On an ``InMemoryStorage`` an ask
does not even look at the trials at the head of the study that had all finished at an earlier
ask (``_Kept.head``), and once enough trials have finished for TPE's start-up, they are not
counted again. Trials still running (which ``constant_liar`` puts in the bad group) are read
afresh on every ask, as Optuna does.

What is kept belongs to the trial object the storage handed out: ``InMemoryStorage`` (the
server's study cache) hands out the same object for a finished trial every time, so the kept
values are used; another storage hands out new objects, and this sampler then does what Optuna
does. The samples are Optuna's, bit for bit (``tests/unit/test_tpe_sampler.py`` asks both
samplers side by side on random studies). ``_sample``, ``_split`` and ``_estimator`` follow
``TPESampler._sample``, ``_split_trials`` and ``_build_parzen_estimator`` of optuna 5.0.0 (the
version pyproject.toml pins); that test is what says whether another version still agrees.

A sample can also be worked out ahead (``sample_ahead``), while the server waits for its
workers: the next trial's sample as the study stands now. Everything after the split is a
function of the two groups' observations and the random state alone, so a later ask whose
split gives the same observations from the same random state returns that sample (and leaves
the random state as working it out did). With ``constant_liar`` a running trial counts in the
bad group, so the sample stays good when a running trial is then pruned, or completes, into
that group (most trials, once there are a few dozen): the ask that hands out the next trial
skips the estimators and the acquisition function.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.sampler import (
    _get_infeasible_trial_score,
    _get_pruned_trial_score,
    _split_complete_trials_multi_objective,
    default_gamma,
    default_gamma_multiobjective,
)
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from hposvc.samplers import log_ndtr
from hposvc.samplers.mixture_log_pdf import acquisition

if TYPE_CHECKING:
    from optuna import Study
    from optuna.distributions import BaseDistribution

_Space = tuple[tuple[str, "BaseDistribution"], ...]


class _Seen:
    """What TPE reads off one complete or pruned trial."""

    __slots__ = ("trial", "number", "value", "infeasible", "pruned_score")

    def __init__(self, trial: FrozenTrial, study: Study) -> None:
        self.trial = trial
        self.number = trial.number
        self.value: float | None = None
        self.pruned_score: tuple[float, float] | None = None
        if trial.state == TrialState.COMPLETE and len(study.directions) == 1:
            self.value = trial.value
        elif trial.state == TrialState.PRUNED:
            self.pruned_score = _get_pruned_trial_score(trial, study)
        self.infeasible = _get_infeasible_trial_score(trial)


class _Rows:
    """A study's kept trials' parameters in one search space's internal form: row i is kept
    trial i's, and ``has[i]`` says whether that trial has every parameter of the space."""

    def __init__(self, width: int) -> None:
        self.values = np.empty((64, width))
        self.has = np.zeros(64, dtype=bool)

    def put(self, i: int, row: tuple[float, ...] | None) -> None:
        if i == len(self.has):
            self.values, self.has = _doubled(self.values), _doubled(self.has)
        self.has[i] = row is not None
        if row is not None:
            self.values[i] = row


class _Kept:
    """One study's finished trials as TPE reads them, one row per trial, in numpy arrays that
    an ask sorts and gathers.

    On an ``InMemoryStorage`` (the server's study cache) the study's first ``head`` trials had
    all finished at an earlier ask, so they are not looked at again: ``head_rows`` are the rows
    of those that completed or were pruned. A finished trial never changes.
    """

    def __init__(self, storage: object) -> None:
        self.storage = storage  # held, so that the id in the sampler's key stays this one's
        self.seen: list[_Seen] = []
        self.row_of: dict[int, int] = {}  # trial id -> row
        self.number = np.empty(64, dtype=np.int64)
        self.group = np.empty(64, dtype=np.int8)  # _COMPLETE, _PRUNED or _INFEASIBLE
        self.value = np.empty(64)  # a complete trial's value (one objective)
        self.last_step = np.empty(64)  # a pruned trial's score: (last_step, last_value)
        self.last_value = np.empty(64)
        self.infeasible = np.empty(64)
        self.rows: dict[int, _Rows] = {}  # by search space (``RememberingTPESampler._spaces``)
        self.head = 0
        self.head_rows = np.empty(0, dtype=np.int64)
        self.started = False  # as many trials finished as TPE's start-up needs

    def put(self, row: int, seen: _Seen) -> None:
        if row == len(self.seen):
            self.seen.append(seen)
            if row == len(self.number):
                for name in ("number", "group", "value", "last_step", "last_value", "infeasible"):
                    setattr(self, name, _doubled(getattr(self, name)))
        else:
            self.seen[row] = seen
        self.row_of[seen.trial._trial_id] = row
        if seen.infeasible > 0:
            self.group[row] = _INFEASIBLE
        elif seen.pruned_score is None:
            self.group[row] = _COMPLETE
        else:
            self.group[row] = _PRUNED
        self.number[row] = seen.number
        self.value[row] = math.nan if seen.value is None else seen.value
        self.last_step[row], self.last_value[row] = seen.pruned_score or (0.0, 0.0)
        self.infeasible[row] = seen.infeasible


def _doubled(column: np.ndarray) -> np.ndarray:
    """``column`` with room for as many rows again (rows are written before they are read)."""
    return np.concatenate([column, np.empty_like(column)])


class _Ahead:
    """A sample worked out ahead: what it came from (``key``), the sample, and the sampler's
    random state after it."""

    __slots__ = ("key", "params", "rng_after")

    def __init__(self, key: tuple[Any, ...], params: dict[str, Any], rng_after: Any) -> None:
        self.key, self.params, self.rng_after = key, params, rng_after


_COMPLETE, _PRUNED, _INFEASIBLE = 0, 1, 2
_STARTED = (TrialState.COMPLETE, TrialState.PRUNED)


class RememberingTPESampler(TPESampler):
    """``optuna.samplers.TPESampler`` with what it reads off finished trials kept."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        log_ndtr.install()  # the same floats as optuna's, sooner (hposvc/samplers/log_ndtr.py)
        self._tables: dict[tuple[int, int], _Kept] = {}  # by (id(storage), study id)
        self._spaces: list[_Space] = []
        self._ahead: list[_Ahead] = []  # samples worked out ahead, one per search space
        self._working_ahead: list[_Ahead] | None = None  # while ``sample_ahead`` runs
        self.taken_ahead = 0  # asks that took a sample worked out ahead

    def sample_ahead(self, study: Study, number: int) -> None:
        """Work out trial ``number``'s relative sample as the study stands now, from the
        sampler's random state as it is now, and leave that state as it was.

        Only with ``constant_liar``: without it the trial that ends next joins the split, and
        no later ask would find the same observations.
        """
        if not self._constant_liar:
            return
        trial = create_trial(state=TrialState.RUNNING)
        trial.number = number
        state = self._rng.rng.get_state()
        study._thread_local.cached_all_trials = None  # read afresh, as an ask does
        self._working_ahead = []
        try:
            search_space = self.infer_relative_search_space(study, trial)
            if self._group:  # as sample_relative splits it
                assert self._search_space_group is not None
                for sub_space in self._search_space_group.search_spaces:
                    space = {
                        name: dist
                        for name, dist in sorted(sub_space.items())
                        if not dist.single() and name in search_space
                    }
                    self._sample_relative(study, trial, space)
            else:
                self._sample_relative(study, trial, search_space)
            self._ahead = self._working_ahead
        finally:
            self._working_ahead = None
            self._rng.rng.set_state(state)
            study._thread_local.cached_all_trials = None

    def _sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # TPESampler._sample_relative, which lists every finished trial to count them; once
        # there are enough, there always are.
        if search_space == {}:
            return {}
        kept = self._table(study)
        if not kept.started:
            trials = study._get_trials(deepcopy=False, states=_STARTED, use_cache=True)
            if len(trials) < self._n_startup_trials:
                return {}
            kept.started = True
        return self._sample(study, trial, search_space)

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # TPESampler._sample, with the split and the Parzen estimators' observations taken
        # from what is kept (``_split`` and ``_estimator``).
        kept = self._table(study)
        rows, running = self._finished(kept, study, trial.number)
        if self._gamma is None:
            if len(study.directions) <= 1:
                self._gamma = default_gamma
            else:
                self._gamma = default_gamma_multiobjective
        below, above = self._split(
            study, kept, rows, running, self._rows(kept, search_space, study)
        )
        below_values = self._observed(study, search_space, below)
        above_values = self._observed(study, search_space, above)
        rng = self._rng.rng
        state = rng.get_state()
        key = (
            id(study._storage),
            study._study_id,
            tuple(search_space.items()),
            below_values.shape,
            below_values.tobytes(),
            above_values.shape,
            above_values.tobytes(),
            state[1].tobytes(),
            *state[2:],
        )
        for i, done in enumerate(self._ahead):
            if done.key == key:
                if self._working_ahead is not None:
                    self._working_ahead.append(done)  # still good: kept as it is
                else:
                    del self._ahead[i]
                    self.taken_ahead += 1
                rng.set_state(done.rng_after)
                return dict(done.params)

        mpe_below = self._estimator(study, search_space, below_values, handle_below=True)
        mpe_above = self._estimator(study, search_space, above_values, handle_below=False)
        samples_below = mpe_below.sample(rng, self._n_ei_candidates)
        acq_func_vals = acquisition(samples_below, mpe_below, mpe_above)  # optuna's, sooner
        ret = TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        if self._working_ahead is not None:
            self._working_ahead.append(_Ahead(key, dict(ret), rng.get_state()))
        return ret

    def _table(self, study: Study) -> _Kept:
        key = (id(study._storage), study._study_id)
        kept = self._tables.get(key)
        if kept is None:
            kept = self._tables[key] = _Kept(study._storage)
        return kept

    def _finished(
        self, kept: _Kept, study: Study, sampling: int
    ) -> tuple[np.ndarray, list[FrozenTrial]]:
        """The rows of the study's complete and pruned trials, and (with ``constant_liar``)
        its running trials but trial number ``sampling``, each in the order of their numbers:
        the trials TPESampler._sample lists."""
        storage = study._storage
        if isinstance(storage, InMemoryStorage):  # the study cache's AdoptingStorage too
            with storage._lock:
                trials = storage._studies[study._study_id].trials[kept.head :]
            at_head = True
        else:
            states = (*_STARTED, TrialState.RUNNING) if self._constant_liar else _STARTED
            trials = study._get_trials(
                deepcopy=False, states=states, use_cache=not self._constant_liar
            )
            at_head = False
        head: list[int] = []
        rows: list[int] = []
        running: list[FrozenTrial] = []
        row_of, seen = kept.row_of, kept.seen
        for trial in trials:
            state = trial.state
            if state == TrialState.COMPLETE or state == TrialState.PRUNED:
                row = row_of.get(trial._trial_id)
                if row is None or seen[row].trial is not trial:
                    row = len(seen) if row is None else row
                    kept.put(row, _Seen(trial, study))
                    for space, space_rows in kept.rows.items():
                        space_rows.put(
                            row, self._internal_row(trial, dict(self._spaces[space]), study)
                        )
                (head if at_head else rows).append(row)
            elif state == TrialState.FAIL:
                pass
            else:
                at_head = False
                if (
                    state == TrialState.RUNNING
                    and self._constant_liar
                    and trial.number != sampling
                ):
                    running.append(trial)
                continue
            kept.head += at_head
        if head:
            kept.head_rows = np.concatenate([kept.head_rows, head])
        # (on another storage there is no head: head_rows stays empty)
        return np.concatenate([kept.head_rows, np.array(rows, dtype=np.int64)]), running

    def _rows(self, kept: _Kept, search_space: dict[str, BaseDistribution], study: Study) -> _Rows:
        """The kept trials' parameters in ``search_space``."""
        space = tuple(search_space.items())
        if space in self._spaces:
            index = self._spaces.index(space)
        else:
            index = len(self._spaces)
            self._spaces.append(space)
        rows = kept.rows.get(index)
        if rows is None:
            rows = kept.rows[index] = _Rows(len(space))
            for row, one in enumerate(kept.seen):
                rows.put(row, self._internal_row(one.trial, search_space, study))
        return rows

    def _split(
        self,
        study: Study,
        kept: _Kept,
        ix: np.ndarray,
        running: list[FrozenTrial],
        rows: _Rows,
    ) -> tuple[_Group, _Group]:
        """optuna's ``_split_trials``, on what is kept: each group is the kept rows of its
        finished trials (of ``ix``) and its running trials, in the order of their numbers."""
        assert self._gamma is not None
        n_below = self._gamma(len(ix))
        group = kept.group[ix]
        complete, pruned = ix[group == _COMPLETE], ix[group == _PRUNED]
        infeasible = ix[group == _INFEASIBLE]

        below_complete, above_complete = self._split_complete(study, kept, complete, n_below)
        n_below = max(0, n_below - len(below_complete))
        # Sorted as optuna sorts them: by (last_step, last_value), ties in the trials' order.
        pruned = pruned[np.lexsort((kept.last_value[pruned], kept.last_step[pruned]))]
        n_pruned = min(n_below, len(pruned))
        n_below = max(0, n_below - n_pruned)
        infeasible = infeasible[np.argsort(kept.infeasible[infeasible], kind="stable")]
        n_infeasible = min(n_below, len(infeasible))

        below = np.concatenate([below_complete, pruned[:n_pruned], infeasible[:n_infeasible]])
        above = np.concatenate([above_complete, pruned[n_pruned:], infeasible[n_infeasible:]])
        below = below[np.argsort(kept.number[below])]
        above = above[np.argsort(kept.number[above])]
        return (
            _Group(rows, below, kept.number[below], []),
            _Group(rows, above, kept.number[above], running),
        )

    @staticmethod
    def _split_complete(
        study: Study, kept: _Kept, complete: np.ndarray, n_below: int
    ) -> tuple[np.ndarray, np.ndarray]:
        n_below = min(n_below, len(complete))
        if len(study.directions) == 1:
            values = kept.value[complete]
            if study.direction == StudyDirection.MAXIMIZE:
                values = -values  # sorted(reverse=True) keeps ties in order, as this does
            ordered = complete[np.argsort(values, kind="stable")]
            return ordered[:n_below], ordered[n_below:]
        row_by_trial = {id(kept.seen[row].trial): row for row in complete.tolist()}
        below, above = _split_complete_trials_multi_objective(
            [kept.seen[row].trial for row in complete.tolist()], study, n_below
        )
        return (
            np.array([row_by_trial[id(t)] for t in below], dtype=np.int64),
            np.array([row_by_trial[id(t)] for t in above], dtype=np.int64),
        )

    def _observed(
        self, study: Study, search_space: dict[str, BaseDistribution], group: _Group
    ) -> np.ndarray:
        """The internal parameters of the group's trials that have all of ``search_space``'s,
        in the order of their numbers: a row per trial, a column per parameter."""
        values = group.rows.values[group.kept]
        has = group.rows.has[group.kept]
        if group.running:
            fresh = [self._internal_row(t, search_space, study) for t in group.running]
            width = len(search_space)
            values = np.concatenate(
                [values, np.array([r or (0.0,) * width for r in fresh]).reshape(-1, width)]
            )
            has = np.concatenate([has, [r is not None for r in fresh]])
            numbers = np.concatenate([group.numbers, [t.number for t in group.running]])
            order = np.argsort(numbers, kind="stable")
            values, has = values[order], has[order]
        return values[has]

    def _estimator(
        self,
        study: Study,
        search_space: dict[str, BaseDistribution],
        values: np.ndarray,
        handle_below: bool,
    ) -> _ParzenEstimator:
        """TPESampler._build_parzen_estimator on the observations ``_observed`` gathered."""
        observations = {
            name: _column(values[:, i], dist)
            for i, (name, dist) in enumerate(search_space.items())
        }
        if handle_below and study._is_multi_objective():
            weights_below = np.ones(len(values))
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


class _Group:
    """One side of the split: kept rows (``kept``, with their trials' ``numbers``) and
    running trials, read afresh."""

    __slots__ = ("rows", "kept", "numbers", "running")

    def __init__(
        self, rows: _Rows, kept: np.ndarray, numbers: np.ndarray, running: list[FrozenTrial]
    ) -> None:
        self.rows, self.kept, self.numbers, self.running = rows, kept, numbers, running


def _column(values: np.ndarray, dist: BaseDistribution) -> np.ndarray:
    """A column as ``np.asarray`` makes it of the internal values: a categorical parameter's
    are indices (ints), the others floats; no values at all make an empty float array."""
    if isinstance(dist, CategoricalDistribution) and len(values):
        return values.astype(np.int64)
    return values
