"""The scope every decision about a study runs in: process lock, row lock, synced cache.

Order matters: the process lock first (so two threads of one server never wait on each other
while holding the database lock), then the study's row lock (PostgreSQL ``FOR UPDATE``; on
SQLite the ``BEGIN IMMEDIATE`` write lock), then the cache is synced with what changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select
from sqlalchemy.orm import Session

from hposvc.db.base import utcnow
from hposvc.db.models import IntermediateValue, Study, Trial, find_study_by_id
from hposvc.db.session import Database
from hposvc.domain.states import StudyState, TrialState
from hposvc.samplers import CacheOutOfSync, StudyCache, StudyCaches, TrialRecord
from hposvc.schemas.studies import StudySpec

# The columns of a trial the cache needs (``TrialRecord``), read without loading ORM objects.
_CHANGED_TRIALS = (
    select(
        Trial.id,
        Trial.number,
        Trial.state,
        Trial.params,
        Trial.distributions,
        Trial.values,
        Trial.system_attrs,
        Trial.fixed_params,
    )
    .where(Trial.study_id == bindparam("b_study"), Trial.seq > bindparam("b_seq"))
    .order_by(Trial.number)
)
_VALUES_OF_TRIALS = select(
    IntermediateValue.trial_id, IntermediateValue.step, IntermediateValue.value
).where(IntermediateValue.trial_id.in_(bindparam("b_trials", expanding=True)))
_STUDY_ATTRS = select(Study.system_attrs).where(Study.id == bindparam("b_study"))
# PostgreSQL: the study's attributes and its changed trials with their intermediate values
# (a JSON object by step), in one statement: one row with NULL trial columns when no trial
# changed. Floats come back exact, as in the two queries above (PostgreSQL 12 and later write
# the shortest text that reads back as the same double).
_STUDY_CHANGES = (
    select(
        Study.system_attrs.label("study_attrs"),
        *_CHANGED_TRIALS.selected_columns,
        select(func.json_object_agg(IntermediateValue.step, IntermediateValue.value))
        .where(IntermediateValue.trial_id == Trial.id)
        .scalar_subquery()
        .label("steps"),
    )
    .select_from(Study)
    .outerjoin(Trial, and_(Trial.study_id == Study.id, Trial.seq > bindparam("b_seq")))
    .where(Study.id == bindparam("b_study"))
    .order_by(Trial.number)
)


def changed_trial_records(conn: Connection, study_id: int, since_seq: int) -> list[TrialRecord]:
    """The study's trials written after ``since_seq`` (-1: all of them), in number order, as
    the cache needs them, intermediate values included (two queries)."""
    rows = conn.execute(_CHANGED_TRIALS, {"b_study": study_id, "b_seq": since_seq}).all()
    values: dict[int, dict[int, float]] = {row.id: {} for row in rows}
    ids = list(values)
    for start in range(0, len(ids), 5000):
        keys = {"b_trials": ids[start : start + 5000]}
        for trial_id, step, value in conn.execute(_VALUES_OF_TRIALS, keys):
            values[trial_id][step] = value
    return [_record(row, values[row.id]) for row in rows]


def study_changes(
    conn: Connection, study_id: int, since_seq: int
) -> tuple[dict[str, Any], list[TrialRecord]]:
    """The study's attributes and ``changed_trial_records``: on PostgreSQL in one statement (a
    replica catching up under the study's row lock, where each round trip holds up the
    others), elsewhere in three."""
    keys = {"b_study": study_id, "b_seq": since_seq}
    if conn.dialect.name != "postgresql":
        attrs = conn.execute(_STUDY_ATTRS, keys).scalar_one()
        return attrs, changed_trial_records(conn, study_id, since_seq)
    rows = conn.execute(_STUDY_CHANGES, keys).all()
    records = [
        _record(row, {int(step): float(v) for step, v in (row.steps or {}).items()})
        for row in rows
        if row.id is not None
    ]
    return rows[0].study_attrs, records


def _record(row: Any, intermediate_values: dict[int, float]) -> TrialRecord:
    return TrialRecord(
        number=row.number,
        state=TrialState(row.state),
        params=row.params,
        distributions=row.distributions,
        values=row.values,
        intermediate_values=intermediate_values,
        system_attrs=row.system_attrs,
        fixed_params=row.fixed_params,
    )


@dataclass
class Decision:
    """A locked study with its synced cache; writes go through here so the seq advances."""

    session: Session
    study: Study
    cache: StudyCache
    spec: StudySpec
    now: datetime
    dirty: bool = False
    _bumped: bool = field(default=False, repr=False)

    def touch(self, trial: Trial) -> None:
        """Mark a trial row as changed by this decision."""
        if not self._bumped:
            self.study.seq += 1
            self.study.updated_at = self.now
            self._bumped = True
        trial.seq = self.study.seq

    def count_trials(self, state: TrialState) -> int:
        return (
            self.session.scalar(
                select(func.count())
                .select_from(Trial)
                .where(Trial.study_id == self.study.id, Trial.state == state.value)
            )
            or 0
        )

    def add_waiting(self, trial: Trial) -> None:
        """Add a WAITING trial (enqueued or a retry) to the study and to the cache."""
        self.dirty = True
        trial.number = self.study.n_trials
        self.session.add(trial)
        self.study.n_trials += 1
        self.touch(trial)
        record = TrialRecord(
            number=trial.number,
            state=TrialState.WAITING,
            params={},
            distributions={},
            values=None,
            intermediate_values={},
            system_attrs={},
            fixed_params=trial.fixed_params,
        )
        self.cache.sync(self.study.system_attrs, [record], self.cache.seq)

    def set_study_attrs(self, attrs: dict[str, Any]) -> None:
        if attrs != self.study.system_attrs:
            self.study.system_attrs = dict(attrs)

    def complete_if_done(self, *, running: int | None = None) -> None:
        """A running study whose budget is spent and has nothing in flight completes."""
        study, budget = self.study, self.spec.budget
        if study.state != StudyState.RUNNING.value or self.cache.has_waiting():
            return
        spent = (
            study.budget_used >= budget.max_trials
            or not self.cache.can_create()
            or self.time_is_up()
        )
        if not spent:
            return
        if running is None:
            running = self.count_trials(TrialState.RUNNING)
        if running == 0:
            self.set_state(StudyState.COMPLETED)

    def time_is_up(self) -> bool:
        limit = self.spec.budget.time_limit_seconds
        return limit is not None and (self.now - self.study.created_at).total_seconds() >= limit

    def set_state(self, state: StudyState) -> None:
        self.study.state = state.value
        self.study.updated_at = self.now
        if state is StudyState.COMPLETED:
            self.study.completed_at = self.now


def _sync(session: Session, caches: StudyCaches, study: Study, spec: StudySpec) -> StudyCache:
    cache = caches.get(study.id)
    if cache is not None and cache.seq == study.seq:
        return cache
    for attempt in range(2):
        if cache is None or attempt:
            cache = StudyCache(study.id, spec)
        records = changed_trial_records(session.connection(), study.id, cache.seq)
        try:
            cache.sync(study.system_attrs, records, study.seq)
            caches.put(cache)
            return cache
        except CacheOutOfSync:
            caches.drop(study.id)
    raise CacheOutOfSync(f"study {study.id} could not be rebuilt")


@contextmanager
def decide(*, db: Database, caches: StudyCaches, study_id: int) -> Iterator[Decision]:
    """Lock the study, sync its cache, and commit what the block did (or undo it all).

    Raises:
        NotFoundError: the study does not exist (any more).
        StorageError: the database failed.
    """
    with caches.lock(study_id):
        decision: Decision | None = None
        try:
            with db.session(write=True) as session:
                study = find_study_by_id(session, study_id, for_update=True)
                known = caches.get(study_id)
                spec = known.spec if known else StudySpec.model_validate(study.spec)
                cache = _sync(session, caches, study, spec)
                decision = Decision(session, study, cache, spec, utcnow())
                yield decision
                new_seq = study.seq
            cache.seq = new_seq
        except BaseException:
            if decision is not None and decision.dirty:
                caches.drop(study_id)
            raise
