"""One Optuna study per hposvc study, kept in memory and synced from the database.

The database is the source of truth. A cache holds an ``InMemoryStorage`` whose trial k is the
database's trial number k, and it is brought up to date (``sync``) with the rows that changed
since it last looked before every decision. Decisions are serialized by the caller (a process
lock from ``StudyCaches`` plus the study's row lock). Anything unexpected raises
``CacheOutOfSync``: the caller drops the cache and rebuilds it from every row.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
import warnings
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.trial import TrialState as OptunaState
from optuna.trial import create_trial

from hposvc.domain.states import TrialState
from hposvc.samplers.adopting_storage import AdoptingStorage
from hposvc.samplers.base import AskResult, PruneResult, TrialRecord
from hposvc.samplers.distributions import suggest
from hposvc.samplers.registry import build_pruner, build_sampler
from hposvc.samplers.tpe import RememberingTPESampler
from hposvc.schemas.search_space import is_active
from hposvc.schemas.studies import StudySpec

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
# TPE's group option is marked experimental; it is what makes conditional spaces multivariate.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

_TO_OPTUNA = {
    TrialState.WAITING: OptunaState.WAITING,
    TrialState.RUNNING: OptunaState.RUNNING,
    TrialState.COMPLETE: OptunaState.COMPLETE,
    TrialState.PRUNED: OptunaState.PRUNED,
    TrialState.FAIL: OptunaState.FAIL,
}


class CacheOutOfSync(Exception):
    """The cache disagrees with the database; rebuild it."""


_dist_memo: dict[str, Any] = {}


def _dist(text: str) -> Any:
    dist = _dist_memo.get(text)
    if dist is None:
        dist = _dist_memo[text] = json_to_distribution(text)
    return dist


def _reseed(sampler: Any, seed: int) -> None:
    """Seed every random state of a sampler (and its fallback samplers) in place.

    Seeding per trial number, rather than once at construction, keeps a seeded study
    reproducible and stops two replicas (or a rebuilt cache) from repeating each other's points.
    """
    for value in vars(sampler).values():
        if isinstance(value, LazyRandomState):
            value.rng.seed(seed)
        elif isinstance(value, optuna.samplers.BaseSampler):
            _reseed(value, seed + 1)


# A sample is worked out ahead only where the study's answers come at least this many times
# its cost apart: it holds the study's lock and, but for numpy's longer loops, the GIL.
_AHEAD_SPACING = 10
# What a sample worked out ahead is taken to cost before one has been timed: at least this.
# The study's asks so far are no guide then: TPE's start-up trials are random draws, which take
# microseconds where TPE's own samples take milliseconds (2.8 to 8 ms here at 30 trials).
_AHEAD_COST_FLOOR = 0.002
# How long a study another server wrote counts as shared (``hot_paths._catch_up``): its
# decisions then read the study's rows rather than trust those this process last wrote.
_ELSEWHERE_SECONDS = 10.0


class StudyCache:
    """An Optuna study mirroring one hposvc study's trials."""

    def __init__(self, study_id: int, spec: StudySpec) -> None:
        self.study_id = study_id
        self.spec = spec
        self.seq = -1
        self.ask_times: deque[float] = deque(maxlen=5)  # how long the last samples took, s
        # The rows the hot paths last wrote or read for this study (hot_paths._Known): they go
        # with the cache, and are trusted only while its seq is theirs.
        self.known_rows: Any = None
        self.storage = AdoptingStorage()
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=f"hposvc-{study_id}",
            directions=spec.directions,
            sampler=build_sampler(spec),
            pruner=build_pruner(spec),
        )
        self._sid = self.study._study_id
        self._space = spec.search_space.ordered()
        self._is_grid = isinstance(self.study.sampler, optuna.samplers.GridSampler)
        self._n_grid = len(self.study.sampler._all_grids) if self._is_grid else 0
        self._grid_ids: set[int] = set()
        self._n_waiting = 0
        self._n_running = 0
        sampler = self.study.sampler
        self._samples_ahead = isinstance(sampler, RememberingTPESampler) and sampler._constant_liar
        self._last_answer: float | None = None
        self.answer_gaps: deque[float] = deque(maxlen=5)  # between the study's answers, s
        self.ahead_times: deque[float] = deque(maxlen=5)  # how long working ahead took, s

    @property
    def n_trials(self) -> int:
        return len(self.storage._studies[self._sid].trials)

    @property
    def n_running(self) -> int:
        """How many of the study's trials are running (a study's ``max_concurrent`` caps it)."""
        return self._n_running

    def study_system_attrs(self) -> dict[str, Any]:
        return dict(self.storage.get_study_system_attrs(self._sid))

    # -- sync ------------------------------------------------------------------------------

    def sync(self, study_attrs: dict[str, Any], records: Iterable[TrialRecord], seq: int) -> None:
        """Apply the study's attributes and the changed trials (in number order).

        Raises:
            CacheOutOfSync: a gap in numbers or a finished trial that changed.
        """
        current = self.storage.get_study_system_attrs(self._sid)
        for key, value in study_attrs.items():
            if current.get(key) != value:
                self.storage.set_study_system_attr(self._sid, key, value)
        for record in records:
            n = self.n_trials
            if record.number == n:
                self._add(record)
            elif record.number < n:
                self._update(record)
            else:
                raise CacheOutOfSync(f"trial {record.number} arrived before trial {n}")
        self.seq = seq

    def _add(self, r: TrialRecord) -> None:
        if r.state is TrialState.WAITING:
            trial = create_trial(
                state=OptunaState.WAITING,
                system_attrs={**r.system_attrs, "fixed_params": r.fixed_params or {}},
            )
            self._n_waiting += 1
        else:
            dists = {k: _dist(v) for k, v in r.distributions.items()}
            values = r.values
            if r.state is TrialState.FAIL:
                values = None
            self._n_running += r.state is TrialState.RUNNING
            trial = create_trial(
                state=_TO_OPTUNA[r.state],
                params=r.params,
                distributions=dists,
                values=values,
                intermediate_values=r.intermediate_values,
                system_attrs=r.system_attrs,
            )
        trial.number = r.number  # its position: sync adds trials in number order
        self.storage.adopt_trial(self._sid, trial)
        self._note_grid(r.system_attrs)

    def _update(self, r: TrialRecord) -> None:
        tid = r.number
        ft = self.storage.get_trial(tid)
        target = _TO_OPTUNA[r.state]
        if ft.state.is_finished():
            if ft.state != target:
                raise CacheOutOfSync(f"finished trial {tid} changed state")
            return
        for name, value in r.params.items():
            if name not in ft.params:
                dist = _dist(r.distributions[name])
                self.storage.set_trial_param(tid, name, dist.to_internal_repr(value), dist)
        for key, value in r.system_attrs.items():
            if ft.system_attrs.get(key) != value:
                self.storage.set_trial_system_attr(tid, key, value)
        for step, value in r.intermediate_values.items():
            if ft.intermediate_values.get(step) != value:
                self.storage.set_trial_intermediate_value(tid, step, value)
        if target != ft.state:
            if ft.state == OptunaState.WAITING:
                self._n_waiting -= 1
            self._n_running += (target == OptunaState.RUNNING) - (ft.state == OptunaState.RUNNING)
            if target == OptunaState.FAIL:
                self.storage.set_trial_state_values(tid, target)
            else:
                self.storage.set_trial_state_values(tid, target, r.values)
        self._note_grid(r.system_attrs)

    def _note_grid(self, attrs: dict[str, Any]) -> None:
        if self._is_grid and "grid_id" in attrs:
            self._grid_ids.add(int(attrs["grid_id"]))

    # -- decisions -------------------------------------------------------------------------

    def has_waiting(self) -> bool:
        return self._n_waiting > 0

    def can_create(self) -> bool:
        """False once every grid point has been handed out (retries may still run)."""
        return not self._is_grid or len(self._grid_ids) < self._n_grid

    def ask(self) -> AskResult | None:
        """The next trial: a waiting one (enqueued or a retry) first, else a new sample."""
        was_waiting = self._n_waiting > 0
        if not was_waiting and not self.can_create():
            return None
        started = time.perf_counter()
        self._seed_for(self.n_trials)
        trial = self.study.ask()
        self._n_running += 1  # a new trial, or a waiting one, now running
        if was_waiting:
            self._n_waiting -= 1
        chosen: dict[str, Any] = {}
        for name, param in self._space:
            if is_active(param, chosen):
                chosen[name] = suggest(trial, name, param)
        ft = self.storage.get_trial(trial._trial_id)
        if ft.number != trial._trial_id:
            raise CacheOutOfSync("trial id and number diverged")
        attrs = dict(ft.system_attrs)
        attrs.pop("fixed_params", None)
        grid_id = attrs.get("grid_id") if self._is_grid else None
        self._note_grid(attrs)
        self.ask_times.append(time.perf_counter() - started)
        return AskResult(
            number=ft.number,
            params=dict(ft.params),
            distributions={k: distribution_to_json(d) for k, d in ft.distributions.items()},
            system_attrs=attrs,
            grid_id=int(grid_id) if grid_id is not None else None,
            was_waiting=was_waiting,
            study_system_attrs=dict(self.storage.get_study_system_attrs(self._sid)),
        )

    def _seed_for(self, number: int) -> None:
        """Seed the sampler for trial ``number``, in a study with a seed."""
        if self.spec.sampler.seed is not None:
            _reseed(self.study.sampler, zlib.crc32(f"{self.spec.sampler.seed}:{number}".encode()))

    def answered(self, now: float) -> bool:
        """Note that an answer about this study went out at ``now`` (monotonic seconds).

        Returns:
            Whether to work out the next sample ahead now (:meth:`sample_ahead`): the sampler
            can, and the study's answers come far enough apart (the median of the last five
            gaps) that it takes at most 1/10 of the time between them (its cost: the slowest
            of the last five worked out ahead; before the first, the typical ask's, at least
            ``_AHEAD_COST_FLOOR``).
        """
        last, self._last_answer = self._last_answer, now
        if last is not None:
            self.answer_gaps.append(now - last)
        if not self._samples_ahead or len(self.answer_gaps) < 3:
            return False
        if self.ahead_times:
            cost = max(self.ahead_times)
        else:
            cost = max(self.typical_ask_seconds or 0.0, _AHEAD_COST_FLOOR)
        return statistics.median(self.answer_gaps) >= _AHEAD_SPACING * cost

    def sample_ahead(self) -> None:
        """Work out the next trial's sample as the study stands now, so that its ask can skip
        the work if nothing it depends on changes meanwhile
        (``RememberingTPESampler.sample_ahead``). The ask that follows is the one it would
        have been: a seeded study's ask seeds the sampler for its number, and an unseeded
        one's finds the random state as it was. The caller holds the study's lock.
        """
        if not self._samples_ahead or self._n_waiting or not self.can_create():
            return
        started = time.perf_counter()
        number = self.n_trials
        self._seed_for(number)  # as its ask will (which seeds again)
        self.study.sampler.sample_ahead(self.study, number)
        self.ahead_times.append(time.perf_counter() - started)

    @property
    def typical_ask_seconds(self) -> float | None:
        """How long a sample takes: the median of the last five (None before the first).

        One sample's time swings with what else the machine runs: on a shared 2-core machine
        the same TPE ask took 2.8 ms right after another and 5-6 ms after 40 ms of sleep.
        """
        return statistics.median(self.ask_times) if self.ask_times else None

    def report(self, number: int, step: int, value: float) -> PruneResult:
        """Record an intermediate value and ask the pruner whether to stop."""
        self.storage.set_trial_intermediate_value(number, step, value)
        if len(self.spec.objectives) > 1:
            return PruneResult(False, dict(self.storage.get_trial(number).system_attrs))
        self.study._thread_local.cached_all_trials = None
        prune = bool(self.study.pruner.prune(self.study, self.storage.get_trial(number)))
        return PruneResult(prune, dict(self.storage.get_trial(number).system_attrs))

    def intermediate_value(self, number: int, step: int) -> float | None:
        return self.storage.get_trial(number).intermediate_values.get(step)

    def system_attrs(self, number: int) -> dict[str, Any]:
        return dict(self.storage.get_trial(number).system_attrs)

    def finish(self, number: int, state: TrialState, values: list[float] | None) -> None:
        """Apply a trial's final state, as the database now holds it."""
        ft = self.storage.get_trial(number)
        if ft.state.is_finished():
            raise CacheOutOfSync(f"trial {number} finished twice")
        self._n_running -= ft.state == OptunaState.RUNNING
        if state is TrialState.FAIL:
            self.storage.set_trial_state_values(number, OptunaState.FAIL)
        else:
            self.storage.set_trial_state_values(number, _TO_OPTUNA[state], values)

    def best_trial_numbers(self) -> list[int]:
        """Numbers of the best trial, or of the Pareto front for several objectives."""
        try:
            if len(self.spec.objectives) == 1:
                return [self.study.best_trial.number]
            return [t.number for t in self.study.best_trials]
        except ValueError:
            return []


class StudyCaches:
    """This process's caches, one per study, each with the lock that serializes its use.

    At most ``max_studies`` are kept: the least recently used goes first, and is rebuilt from
    the database when its study is used again (as after a restart).
    """

    def __init__(self, max_studies: int = 64) -> None:
        self.max_studies = max_studies
        self._caches: OrderedDict[int, StudyCache] = OrderedDict()
        self._locks: dict[int, threading.Lock] = {}
        self._decision_queues: dict[int, deque[Any]] = {}
        self._guard = threading.Lock()
        self._trial_study: dict[int, int] = {}
        self._claim_targets: dict[str | None, int] = {}
        self._empty_claims: set[str | None] = set()
        self._ahead = ThreadPoolExecutor(1, thread_name_prefix="sample-ahead")
        self._ahead_due: set[int] = set()  # studies whose sample ahead is queued
        self._elsewhere: dict[int, float] = {}  # study -> when another writer was last seen

    def note_written_elsewhere(self, study_id: int) -> None:
        """Something but this process's hot paths wrote the study (another server, say)."""
        self._elsewhere[study_id] = time.monotonic()

    def written_elsewhere(self, study_id: int) -> bool:
        """Whether that was seen in the last ``_ELSEWHERE_SECONDS``."""
        seen = self._elsewhere.get(study_id)
        return seen is not None and time.monotonic() - seen < _ELSEWHERE_SECONDS

    def answered(self, study_id: int) -> None:
        """An answer about the study went out: work out its next sample ahead, in the
        background, when :meth:`StudyCache.answered` says so."""
        cache = self.get(study_id)
        if cache is None or not cache.answered(time.monotonic()):
            return
        with self._guard:
            if study_id in self._ahead_due:
                return
            self._ahead_due.add(study_id)
        self._ahead.submit(self._sample_ahead, study_id, cache)

    def _sample_ahead(self, study_id: int, cache: StudyCache) -> None:
        with self._guard:
            self._ahead_due.discard(study_id)
        lock = self.lock(study_id)
        if not lock.acquire(blocking=False):
            return  # a decision is under way: the study is about to change anyway
        try:
            if self.get(study_id) is cache:
                cache.sample_ahead()
        except Exception:  # it only ever saves an ask time; the ask works it out itself
            logger.exception("sampling ahead failed for study %d", study_id)
        finally:
            lock.release()

    def claim_target(self, study_name: str | None) -> int | None:
        """The study a claim naming ``study_name`` (None: any study) last went to, if any.

        An assumption, checked again when the claim is decided (``hot_paths``).
        """
        return self._claim_targets.get(study_name)

    def remember_claim_target(self, study_name: str | None, study_id: int) -> None:
        with self._guard:  # ``drop`` forgets a study's targets under it
            self._claim_targets[study_name] = study_id

    def note_claim(self, study_name: str | None, *, got_trial: bool) -> None:
        """How the last claim naming ``study_name`` (None: any study) ended."""
        if got_trial:
            self._empty_claims.discard(study_name)
        else:
            self._empty_claims.add(study_name)

    def claims_came_back_empty(self, study_name: str | None) -> bool:
        """Whether the last claim naming ``study_name`` got no trial (``idle_claims``)."""
        return study_name in self._empty_claims

    def study_of_trial(self, trial_id: int) -> int | None:
        return self._trial_study.get(trial_id)

    def remember_trial(self, trial_id: int, study_id: int) -> None:
        self._trial_study[trial_id] = study_id

    def forget_trial(self, trial_id: int) -> None:
        self._trial_study.pop(trial_id, None)

    def lock(self, study_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(study_id, threading.Lock())

    def decision_queue(self, study_id: int) -> deque[Any]:
        """Claims, reports and completes of the study waiting for its lock (``hot_paths``
        decides them together)."""
        with self._guard:
            return self._decision_queues.setdefault(study_id, deque())

    def get(self, study_id: int) -> StudyCache | None:
        with self._guard:
            cache = self._caches.get(study_id)
            if cache is not None:
                self._caches.move_to_end(study_id)
            return cache

    def put(self, cache: StudyCache) -> None:
        with self._guard:
            self._caches[cache.study_id] = cache
            self._caches.move_to_end(cache.study_id)
            while len(self._caches) > self.max_studies:
                self._caches.popitem(last=False)

    def drop(self, study_id: int) -> None:
        with self._guard:
            self._caches.pop(study_id, None)
            for name, target in list(self._claim_targets.items()):
                if target == study_id:
                    del self._claim_targets[name]
