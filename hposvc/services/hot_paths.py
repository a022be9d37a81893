"""The worker protocol's hot paths: an ordinary claim, report and complete.

Each makes the same decision as the general path in ``trials`` (same locks, in the same order,
same cache, same rows written) with a few prepared Core statements instead of the ORM's unit
of work, which costs several times more than the statements themselves. Anything out of the
ordinary (a cache that must sync first, leases that ran out, a retry of a request, a trial
that is not running, another worker, a waiting trial, a study whose budget may be spent) goes
to the general path, which knows every case: these functions then return None having
written nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Row,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    select,
    update,
)

from hposvc.db.base import utcnow
from hposvc.db.driver_statements import DriverStatement
from hposvc.db.models import IntermediateValue, Study, Trial, Worker
from hposvc.db.session import Database, WriteLockBusy
from hposvc.domain.states import StudyState, TrialState
from hposvc.errors import StorageError
from hposvc.samplers import CacheOutOfSync, StudyCache, StudyCaches
from hposvc.schemas.trials import (
    ClaimedTrial,
    CompletedTrial,
    CompleteRequest,
    NextClaim,
    ReportRequest,
    ReportResponse,
    TrialRead,
    UserAttrsRequest,
)
from hposvc.services.decisions import study_changes

# Built once: constructing statements costs more than running them on SQLite.
_studies, _trials, _values = Study.__table__, Trial.__table__, IntermediateValue.__table__
_STUDY = (
    _studies.c.seq.label("study_seq"),
    _studies.c.state.label("study_state"),
    _studies.c.n_trials,
    _studies.c.budget_used,
    _studies.c.created_at.label("study_created_at"),
)
_RUNNING = TrialState.RUNNING.value


# A claim: the study, and whether any of its running trials' leases ran out. The state is
# written into the SQL, not sent as a parameter: PostgreSQL runs a statement prepared by the
# driver (psycopg prepares one after 5 runs) with a generic plan, which cannot see which state
# a parameter names; it took a third of the trials to be running and scanned every trial of
# the study on each claim (measured: 1.9 ms at 10,000 trials, 0.03 ms with the index).
def _a_lease_ran_out(trials: Any) -> Any:
    return (
        exists()
        .where(
            trials.c.study_id == _studies.c.id,
            trials.c.state == literal_column(f"'{_RUNNING}'", String),
            trials.c.lease_expires_at < bindparam("b_now"),
        )
        .correlate(_studies)
    )


def _lease_ran_out(trials: Any) -> Any:
    return _a_lease_ran_out(trials).label("lease_ran_out")


_LOCK_STUDY = (
    select(*_STUDY, _lease_ran_out(_trials))
    .where(_studies.c.id == bindparam("b_study"))
    .with_for_update(of=_studies)
)
# A report or complete: the study and the trial, in one round trip.
_LOCK_STUDY_WITH_TRIAL = (
    select(*_STUDY, _trials)
    .join_from(_studies, _trials, _trials.c.study_id == _studies.c.id)
    .where(_studies.c.id == bindparam("b_study"), _trials.c.id == bindparam("b_trial"))
    .with_for_update(of=_studies)
)
# Requests decided together: the study (one row even when none of them names a trial), whether
# a running trial's lease ran out (for claims), and the trials the others name, in one round
# trip. The lease check reads the trials under another name: the outer query's would be taken
# for a correlation.
_LOCK_STUDY_WITH_TRIALS = (
    select(*_STUDY, _lease_ran_out(_trials.alias("leased")), _trials)
    .select_from(
        _studies.outerjoin(
            _trials,
            and_(
                _trials.c.study_id == _studies.c.id,
                _trials.c.id.in_(bindparam("b_trials", expanding=True)),
            ),
        )
    )
    .where(_studies.c.id == bindparam("b_study"))
    .with_for_update(of=_studies)
)
_INSERT_VALUE = insert(_values).values(
    trial_id=bindparam("b_trial"),
    step=bindparam("b_step"),
    value=bindparam("b_value"),
    should_prune=bindparam("b_prune"),
)
_UPDATE_VALUE = (
    update(_values)
    .where(_values.c.trial_id == bindparam("b_trial"), _values.c.step == bindparam("b_step"))
    .values(value=bindparam("b_value"), should_prune=bindparam("b_prune"))
)
_TRIAL_RUNS = {
    "last_step": bindparam("b_last_step"),
    "lease_expires_at": bindparam("b_lease"),
    "seq": bindparam("b_seq"),
    "system_attrs": bindparam("b_attrs"),
}
_UPDATE_TRIAL = update(_trials).where(_trials.c.id == bindparam("b_trial")).values(_TRIAL_RUNS)
_FINISHED = {
    "values": bindparam("b_values"),
    "value": bindparam("b_value"),
    "finished_at": bindparam("b_now"),
    "lease_expires_at": None,
    "seq": bindparam("b_seq"),
}
_PRUNE_TRIAL = (
    update(_trials)
    .where(_trials.c.id == bindparam("b_trial"))
    .values(
        {
            **_TRIAL_RUNS,
            **_FINISHED,
            "state": TrialState.PRUNED.value,
            "pruned_step": bindparam("b_step"),
        }
    )
)
_COMPLETE_TRIAL = (
    update(_trials)
    .where(_trials.c.id == bindparam("b_trial"))
    .values({**_FINISHED, "state": TrialState.COMPLETE.value, "user_attrs": bindparam("b_user")})
)
_BUMP_STUDY = (
    update(_studies)
    .where(_studies.c.id == bindparam("b_study"))
    .values(seq=bindparam("b_seq"), updated_at=bindparam("b_now"))
)
_ADD_TRIAL_TO_STUDY = {
    "seq": bindparam("b_seq"),
    "updated_at": bindparam("b_now"),
    "n_trials": _studies.c.n_trials + 1,
    "budget_used": _studies.c.budget_used + 1,
}
_STUDY_GAINS_TRIAL = (
    update(_studies).where(_studies.c.id == bindparam("b_study")).values(_ADD_TRIAL_TO_STUDY)
)
_STUDY_GAINS_TRIAL_AND_ATTRS = (
    update(_studies)
    .where(_studies.c.id == bindparam("b_study"))
    .values({**_ADD_TRIAL_TO_STUDY, "system_attrs": bindparam("b_study_attrs")})
)
_NEW_TRIAL_COLUMNS = (
    "study_id number state params distributions system_attrs user_attrs grid_id counts_budget "
    "attempt worker_id claim_request_id created_at started_at lease_expires_at seq"
).split()
# The columns of a trial that _INSERT_TRIAL leaves to their defaults (all null).
_NEW_TRIAL_NULLS = dict.fromkeys(
    "fixed_params value values retry_of fail_reason pruned_step last_step finished_at".split()
)
_INSERT_TRIAL = (
    insert(_trials)
    .values({name: bindparam(f"b_{name}") for name in _NEW_TRIAL_COLUMNS})
    .returning(_trials.c.id)
)
# With an id reserved ahead (PostgreSQL): nothing to read back.
_INSERT_TRIAL_WITH_ID = insert(_trials).values(
    {name: bindparam(f"b_{name}") for name in ["id", *_NEW_TRIAL_COLUMNS]}
)
_SET_USER_ATTRS = (
    update(_trials)
    .where(_trials.c.id == bindparam("b_trial"))
    .values(user_attrs=bindparam("b_user"), seq=bindparam("b_seq"))
)
_workers = Worker.__table__
_running_studies = select(_studies.c.id).where(_studies.c.state == StudyState.RUNNING.value)
# What a claim must know before it locks a study, in one round trip.
_CLAIM_CONTEXT = select(
    select(_workers.c.id).where(_workers.c.id == bindparam("b_w")).scalar_subquery(),
    select(_trials.c.id)
    .where(_trials.c.worker_id == bindparam("b_w"))
    .where(_trials.c.claim_request_id == bindparam("b_req"))
    .limit(1)
    .scalar_subquery(),
    select(func.count()).select_from(_running_studies.subquery()).scalar_subquery(),
    select(func.min(_studies.c.id))
    .where(_studies.c.state == StudyState.RUNNING.value)
    .scalar_subquery(),
    select(_studies.c.id).where(_studies.c.name == bindparam("b_name")).scalar_subquery(),
)

# A batch decided on the rows this process last wrote (see ``_Known``) reads nothing first: it
# starts with this guard, which locks the study's row and fails the transaction (a division by
# zero, which nothing else in a batch can raise) unless the row is as those decisions assumed;
# with a claim in the batch, also if a running trial's lease ran out. In pipeline mode the
# statements after a failed one are not run, and the COMMIT rolls back.
_STUDY_AS_KNOWN = and_(
    _studies.c.seq == bindparam("g_seq"),
    _studies.c.state == bindparam("g_state"),
    _studies.c.n_trials == bindparam("g_n_trials"),
    _studies.c.budget_used == bindparam("g_budget_used"),
)


def _guard_statement(condition: Any) -> Any:
    # An UPDATE (that changes nothing) rather than a SELECT ... FOR UPDATE: its rows are not
    # read, so in pipeline mode nothing waits for its answer.
    fails_unless = literal_column("1", Integer) / case((condition, 1), else_=0)
    return (
        update(_studies)
        .where(_studies.c.id == bindparam("g_study"), fails_unless == 1)
        .values(seq=_studies.c.seq)
    )


# What a claim decided without ``_CLAIM_CONTEXT`` assumed: its workers are registered, none
# of its requests was claimed before (a retry is the general path's to answer), and, for a
# claim naming no study, this one is the only study running.
_WORKERS_REGISTERED = select(func.count()).select_from(_workers).where(
    _workers.c.id.in_(bindparam("g_workers", expanding=True))
).scalar_subquery() == bindparam("g_n_workers")
_NO_REQUEST_CLAIMED = ~(
    exists()
    .where(
        _trials.c.worker_id.in_(bindparam("g_workers", expanding=True)),
        _trials.c.claim_request_id.in_(bindparam("g_requests", expanding=True)),
    )
    .correlate_except(_trials)
)
_others = _studies.alias("others")
_ONLY_STUDY_RUNNING = (
    select(func.count())
    .select_from(_others)
    .where(_others.c.state == StudyState.RUNNING.value)
    .scalar_subquery()
    == 1
)
_CLAIMS_AS_KNOWN = and_(_STUDY_AS_KNOWN, ~_a_lease_ran_out(_trials))
_GUARD = DriverStatement(_guard_statement(_STUDY_AS_KNOWN))
_GUARD_WITH_LEASES = DriverStatement(_guard_statement(_CLAIMS_AS_KNOWN))
_GUARD_NEW_CLAIMS = _guard_statement(
    and_(_CLAIMS_AS_KNOWN, _WORKERS_REGISTERED, _NO_REQUEST_CLAIMED)
)
_GUARD_NEW_CLAIMS_ANY_STUDY = _guard_statement(
    and_(_CLAIMS_AS_KNOWN, _WORKERS_REGISTERED, _NO_REQUEST_CLAIMED, _ONLY_STUDY_RUNNING)
)
_GUARD_FAILED = "22012"  # PostgreSQL's division_by_zero


# A worker's next claim decided in the transaction of the report or complete that carried it
# (see ``_claim_next_here``): what ``_CLAIM_CONTEXT`` and the lease check would have said. The
# worker holds the trial that ended, so it is registered; the request id must be new; no
# running trial's lease may have run out (the general path hands its trial out again first);
# and for a claim naming no study, this one must be the only study running.
def _next_claim_may(*, any_study: bool) -> Any:
    request_new = ~(
        exists()
        .where(
            _trials.c.worker_id == bindparam("g_worker"),
            _trials.c.claim_request_id == bindparam("g_request"),
        )
        .correlate_except(_trials)
    )
    condition = and_(~_a_lease_ran_out(_trials), request_new)
    if any_study:
        condition = and_(condition, _ONLY_STUDY_RUNNING)
    return condition


# PostgreSQL: a guard in the batch's pipeline, which fails the batch unless the claim may be
# decided. SQLite: read first; its transaction holds the database's write lock, so what it
# reads stays true until the commit (and there a division by zero is NULL, not an error).
_GUARD_NEXT_CLAIM = DriverStatement(_guard_statement(_next_claim_may(any_study=False)))
_GUARD_NEXT_CLAIM_ANY_STUDY = DriverStatement(_guard_statement(_next_claim_may(any_study=True)))
_NEXT_CLAIM_MAY = select(_next_claim_may(any_study=False)).where(
    _studies.c.id == bindparam("g_study")
)
_NEXT_CLAIM_MAY_ANY_STUDY = select(_next_claim_may(any_study=True)).where(
    _studies.c.id == bindparam("g_study")
)


class _Writes:
    """Statements a hot path writes together, sharing one set of parameters.

    On PostgreSQL they go as one statement (the first ones as data-modifying CTEs, which
    touch other rows than the last): one round trip instead of several. Elsewhere they run
    one after the other. Unless the last one returns rows (a new trial's id), they run on the
    driver's cursor (``DriverStatement``); else the last statement's result is returned.
    """

    def __init__(self, *statements: Any) -> None:
        *before, last = statements
        self.statements = statements
        self.combined = last.add_cte(*(s.cte(f"w{i}") for i, s in enumerate(before)))
        self.returns = len(last.exported_columns) > 0  # it has a RETURNING
        if not self.returns:
            self.driver_combined = DriverStatement(self.combined)
            self.driver_statements = [DriverStatement(s) for s in statements]

    def run(self, conn: Connection, params: dict[str, Any]) -> Any:
        postgresql = conn.dialect.name == "postgresql"
        if not self.returns:
            for statement in [self.driver_combined] if postgresql else self.driver_statements:
                statement.run(conn, params)
            return None
        if postgresql:
            return conn.execute(self.combined, params)
        result = None
        for statement in self.statements:
            result = conn.execute(statement, params)
        return result


_REPORT = _Writes(_INSERT_VALUE, _UPDATE_TRIAL, _BUMP_STUDY)
_REPORT_AGAIN = _Writes(_UPDATE_VALUE, _UPDATE_TRIAL, _BUMP_STUDY)
_REPORT_PRUNES = _Writes(_INSERT_VALUE, _PRUNE_TRIAL, _BUMP_STUDY)
_REPORT_AGAIN_PRUNES = _Writes(_UPDATE_VALUE, _PRUNE_TRIAL, _BUMP_STUDY)
_COMPLETE = _Writes(_COMPLETE_TRIAL, _BUMP_STUDY)
_USER_ATTRS = _Writes(_SET_USER_ATTRS, _BUMP_STUDY)
_CLAIM = _Writes(_STUDY_GAINS_TRIAL, _INSERT_TRIAL)
_CLAIM_WITH_STUDY_ATTRS = _Writes(_STUDY_GAINS_TRIAL_AND_ATTRS, _INSERT_TRIAL)
_CLAIM_WITH_ID = _Writes(_STUDY_GAINS_TRIAL, _INSERT_TRIAL_WITH_ID)
_CLAIM_WITH_ID_AND_STUDY_ATTRS = _Writes(_STUDY_GAINS_TRIAL_AND_ATTRS, _INSERT_TRIAL_WITH_ID)


# A claim answered without a thread holds up the event loop while it samples: only when the
# study's samples take less than this (random and grid take microseconds, TPE milliseconds
# growing with the study, GP up to seconds). A sample in a thread frees the loop little
# more: it holds the GIL but for the interpreter's switch interval (5 ms) at a time.
_QUICK_ASK_SECONDS = 0.010


def _quick_to_sample(cache: StudyCache | None) -> bool:
    typical = None if cache is None else cache.typical_ask_seconds
    return typical is not None and typical < _QUICK_ASK_SECONDS


class _GeneralPath(Exception):  # noqa: N818 - a signal, not an error
    """This request needs the general path."""


class _Stale(Exception):  # noqa: N818 - a signal, not an error
    """A decision failed after the study's cache moved on: the cache must be dropped."""


@dataclass
class _StudyNow:
    """The study's row as the decisions of one transaction leave it."""

    seq: int
    state: str
    n_trials: int
    budget_used: int
    created_at: datetime
    lease_ran_out: bool

    @classmethod
    def of(cls, row: Row[Any]) -> _StudyNow:
        return cls(
            seq=int(row.study_seq),
            state=row.study_state,
            n_trials=row.n_trials,
            budget_used=row.budget_used,
            created_at=row.study_created_at,
            lease_ran_out=bool(getattr(row, "lease_ran_out", False)),
        )


class _TrialRow(dict[str, Any]):
    """A trial's columns by name, as read or as a decision here wrote them; read like a Row."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return self


@dataclass
class _Known:
    """A study's row and its running trials' rows as this process last wrote or read them.

    Valid while the cache's seq is ``seq``: every change to a study's trials moves the seq on
    (leases that heartbeats extend excepted: a lease known here is never later than the
    database's, so it can only send a request to the general path). Anything but a batch of
    this process (the general path, another server) moves the seq past ``seq``, and then the
    rows are read again. On PostgreSQL a batch whose study and trials are all known here is
    decided without reading them first, under ``_GUARD`` instead of ``SELECT ... FOR UPDATE``:
    one round trip with the study locked instead of two.
    """

    seq: int
    study: _StudyNow
    trials: dict[int, _TrialRow] = field(default_factory=dict)


@dataclass
class _Locked:
    """A study locked in this process and in the database, its cache current."""

    conn: Connection
    cache: StudyCache
    study: _StudyNow
    row: _TrialRow  # the trial's columns, with a trial; a decision updates what it writes
    now: datetime
    mutated: bool = False
    claimed: _TrialRow | None = None  # the row a claim inserted
    # The write changed only these rows' user attributes and the study's seq: the rows known
    # here (``_Known``) stay valid past it, so the study's next batch is still guarded.
    keeps_known: bool = False

    def may_complete_study(self) -> bool:
        """Whether a trial finishing now might complete the study (the general path's call)."""
        study, cache = self.study, self.cache
        limit = cache.spec.budget.time_limit_seconds
        return (
            study.state != StudyState.RUNNING.value
            or study.budget_used >= cache.spec.budget.max_trials
            or not cache.can_create()
            or (limit is not None and (self.now - study.created_at).total_seconds() >= limit)
        )

    @property
    def seq(self) -> int:
        """The seq this transaction's writes carry."""
        return self.study.seq + 1

    def check_held_by(self, worker_id: int) -> None:
        """The trial must be running for this worker with a live lease, else the general path."""
        row = self.row
        if (
            row.worker_id != worker_id
            or row.state != _RUNNING
            or row.lease_expires_at is None
            or row.lease_expires_at < self.now
        ):
            raise _GeneralPath


@contextmanager
def _study_lock(caches: StudyCaches, study_id: int, *, nowait: bool) -> Iterator[None]:
    lock = caches.lock(study_id)
    if not lock.acquire(blocking=not nowait):
        raise _GeneralPath
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _locked(
    db: Database,
    caches: StudyCaches,
    study_id: int,
    trial_id: int | None = None,
    *,
    nowait: bool = False,
) -> Iterator[_Locked]:
    """The general path's locks in its order; a mutated cache is dropped if the write fails.

    ``nowait``: a lock that is held (the study's, in this process; SQLite's write lock) sends
    the request to the general path at once, having done nothing, instead of waiting for it.
    """
    cache = caches.get(study_id)
    if cache is None:
        raise _GeneralPath
    with _study_lock(caches, study_id, nowait=nowait):
        if caches.get(study_id) is not cache:
            raise _GeneralPath
        locked: _Locked | None = None
        try:
            with db.connection(write=True, nowait=nowait) as conn:
                now = utcnow()
                if trial_id is None:
                    row = conn.execute(_LOCK_STUDY, {"b_study": study_id, "b_now": now}).first()
                else:
                    keys = {"b_study": study_id, "b_trial": trial_id}
                    row = conn.execute(_LOCK_STUDY_WITH_TRIAL, keys).first()
                if row is None:
                    raise _GeneralPath
                if row.study_seq != cache.seq:
                    _catch_up(conn, caches, cache, row.study_seq)
                locked = _Locked(conn, cache, _StudyNow.of(row), _TrialRow(row._mapping), now)
                yield locked
            if locked.mutated:
                known = cache.known_rows
                keep = locked.keeps_known and known is not None and known.seq == cache.seq
                cache.seq = locked.seq
                if keep:
                    _remember(cache, known, locked.study, [locked.row])
        except BaseException as exc:
            if locked is None and isinstance(exc, WriteLockBusy):
                raise _GeneralPath from None  # BEGIN IMMEDIATE found the lock held
            if locked is not None and locked.mutated:
                caches.drop(study_id)
            raise


def _catch_up(conn: Connection, caches: StudyCaches, cache: StudyCache, seq: int) -> None:
    """Sync the cache, under the study's lock, with what was written since its seq by anything
    but this process's hot paths: another server (replicas behind a load balancer take turns
    on a study's requests), or an action on the study. Then the request is decided here as
    after any decision, instead of on the general path, which would sync it the same way.

    Raises:
        _GeneralPath: the cache cannot follow (then it is dropped, and the general path
            rebuilds it); nothing was written.
    """
    if seq < cache.seq:
        raise _GeneralPath
    caches.note_written_elsewhere(cache.study_id)
    cache.known_rows = None
    attrs, records = study_changes(conn, cache.study_id, cache.seq)
    try:
        cache.sync(attrs, records, seq)
    except CacheOutOfSync:
        caches.drop(cache.study_id)
        raise _GeneralPath from None


# -- requests decided together -------------------------------------------------------------


@dataclass(frozen=True)
class _ClaimBody:
    worker_id: int
    request_id: str | None
    trial_id: int | None = None  # the new trial's id, reserved ahead (PostgreSQL)
    # Not read with ``_CLAIM_CONTEXT``: what it would have said is assumed, and checked by the
    # guard (``_GUARD_NEW_CLAIMS``); without the guard, the claim is not decided here.
    assumed: bool = False
    any_study: bool = False  # the claim named no study


@dataclass
class _Queued:
    """A claim, report or complete waiting for its study's lock."""

    trial_id: int | None  # None: a claim
    body: _ClaimBody | ReportRequest | CompleteRequest
    done: bool = False
    answer: Any = None  # None: the general path's
    error: BaseException | None = None
    unchecked: bool = False  # an assumed claim left undecided: nothing guarded its assumptions


def _decide_in_turn(db: Database, caches: StudyCaches, study_id: int, mine: _Queued) -> Any:
    """``mine``'s answer, decided with the requests waiting for the study's lock with it.

    Whichever of their threads gets the lock first decides them all in one transaction (see
    ``_decide_together``); the others find theirs done when they get it. Returns None for the
    general path.

    Raises:
        StorageError: the transaction that held ``mine`` failed.
    """
    queue = caches.decision_queue(study_id)
    queue.append(mine)
    decided_here = False
    with _study_lock(caches, study_id, nowait=False):
        if not mine.done:  # else another thread decided it, with the requests before it
            decided_here = True
            _decide_together(db, caches, study_id, _take_all(queue))
    if mine.error is not None:
        if decided_here:
            raise mine.error
        raise StorageError(f"request not stored: {mine.error}") from mine.error
    return mine.answer


def _take_all(queue: deque[_Queued]) -> list[_Queued]:
    taken = []
    while True:
        try:
            taken.append(queue.popleft())
        except IndexError:
            return taken


def _decide_together(
    db: Database, caches: StudyCaches, study_id: int, queued: list[_Queued]
) -> None:
    """Decide the queued requests of a study in one transaction, in the order they came.

    The study's lock is held. Each request is decided as it would be alone, on the cache and
    the study's row as the requests before it left them; they share one BEGIN, lock and
    COMMIT (on PostgreSQL the round trips and the commit's WAL flush are most of a decision's
    time under the lock). Every request ends ``done``: with its answer, None for the general
    path (it wrote nothing), or the error that rolled the transaction back. Answers go out
    only after the commit.

    On PostgreSQL a report that prunes its trial, or a complete, whose ``next_claim`` claims
    from this study has that claim decided right after it in the same transaction (see
    ``_claim_next_here``): the batch it would otherwise take of its own is saved.
    """
    cache = caches.get(study_id)
    # guarded: the batch's rows were checked by ``_guard`` (assumed claims may then be
    # decided); next_guarded: a next claim's own guard was sent, which vouches for that claim
    # alone. Either guard failing rolls the whole batch back to the general path.
    mutated = stale = guarded = next_guarded = False
    try:
        if cache is None:
            return
        known: _Known | None = cache.known_rows
        if known is not None and known.seq != cache.seq:
            known = None  # something else moved the study on since
        seen: set[int] = set()
        claimed: list[_TrialRow] = []
        rode: list[tuple[ClaimedTrial, NextClaim]] = []  # next claims decided in the batch
        # Pipelined: BEGIN and the lock in one round trip, the writes with the COMMIT in
        # another (a claim, which reads the new trial's id, waits for the writes before it);
        # with the rows known here, the guard, the writes and the COMMIT in one.
        with db.connection(write=True, pipelined=True) as conn:
            now = utcnow()
            names = [q.trial_id for q in queued if q.trial_id is not None]
            claims = [q.body for q in queued if isinstance(q.body, _ClaimBody)]
            if known is not None and not db.is_sqlite and all(n in known.trials for n in names):
                guarded = True
                study = _guard(conn, study_id, known, now, claims=claims)
                by_trial = known.trials
            else:
                keys = {"b_study": study_id, "b_trials": names, "b_now": now}
                rows = conn.execute(_LOCK_STUDY_WITH_TRIALS, keys).all()
                if not rows:
                    return
                if rows[0].study_seq != cache.seq:
                    try:
                        _catch_up(conn, caches, cache, rows[0].study_seq)
                    except _GeneralPath:
                        return
                study = _StudyNow.of(rows[0])
                by_trial = {row.id: _TrialRow(row._mapping) for row in rows if row.id is not None}
            requests: set[tuple[int, str]] = set()
            for q in queued:
                row = _TrialRow()
                if q.trial_id is not None:
                    if q.trial_id in seen or q.trial_id not in by_trial:
                        continue  # a trial twice: the later request takes the general path
                    seen.add(q.trial_id)
                    row = by_trial[q.trial_id]
                elif isinstance(q.body, _ClaimBody):
                    if q.body.assumed and not guarded:
                        q.unchecked = True
                        continue
                    if q.body.request_id is not None:
                        request = (q.body.worker_id, q.body.request_id)
                        if request in requests:
                            continue  # a retry while the claim was waiting: the general path
                        requests.add(request)  # replays what the first one claimed
                hot = _Locked(conn, cache, study, row, now)
                try:
                    q.answer = _decide(hot, q)
                except _GeneralPath:
                    if hot.mutated:  # the cache moved on with nothing written: the rest and
                        stale = True  # the cache go to the general path (after the commit)
                        break
                    continue
                mutated = mutated or hot.mutated
                if hot.claimed is not None:
                    claimed.append(hot.claimed)
                nxt = _rides(q.body, cache, caches, study_id)
                if nxt is not None and _ended(q.answer):
                    next_guarded = next_guarded or not db.is_sqlite
                    try:
                        trial, row = _claim_next_here(db, hot, q.body.worker_id, nxt)
                    except _GeneralPath:
                        continue
                    except _Stale:
                        stale = True
                        break
                    q.answer = _with_next_trial(q.answer, trial)
                    mutated = True
                    claimed.append(row)
                    rode.append((trial, nxt))
        if stale:
            caches.drop(study_id)
            return
        if mutated:
            cache.seq = study.seq + 1
        for trial, nxt in rode:  # as fast_claim remembers a claim it made
            caches.remember_trial(trial.id, study_id)
            caches.remember_claim_target(nxt.study, study_id)
        # Kept where they save a round trip, unless another server writes the study too: its
        # writes would fail the guard, and a failed guard costs the cache.
        if not db.is_sqlite and not caches.written_elsewhere(study_id):
            _remember(cache, known, study, [*(by_trial[n] for n in seen), *claimed])
    except BaseException as exc:
        if mutated or stale or guarded or next_guarded:
            caches.drop(study_id)
        if (guarded or next_guarded) and _guard_failed(exc):
            caches.note_written_elsewhere(study_id)
            for q in queued:  # nothing was written: the general path reads the database
                q.answer = None
            return
        for q in queued:
            q.answer, q.error = None, exc
    finally:
        for q in queued:
            q.done = True


def _rides(body: Any, cache: StudyCache, caches: StudyCaches, study_id: int) -> NextClaim | None:
    """The next claim a report or complete carries, if it claims from this study: one naming
    it, or naming none where the last claim naming none came here (checked again by
    ``_next_claim_may``)."""
    nxt = body.next_claim if isinstance(body, ReportRequest | CompleteRequest) else None
    if nxt is None:
        return None
    if nxt.study is None:
        return nxt if caches.claim_target(None) == study_id else None
    return nxt if nxt.study == cache.spec.name else None


def _ended(answer: Any) -> bool:
    """Whether a decided report or complete ended its trial (then its next claim is made)."""
    if isinstance(answer, tuple):  # a report's (answer, may complete the study)
        return bool(answer[0].should_prune)
    return answer is not None  # a complete's trial


def _claim_next_here(
    db: Database, ended: _Locked, worker_id: int, nxt: NextClaim
) -> tuple[ClaimedTrial, _TrialRow]:
    """The worker's next claim, decided in the transaction of the request that ended its trial
    (``ended``): the claim ``trials.claim_next`` would make right after it, without a
    transaction of its own. On PostgreSQL ``_GUARD_NEXT_CLAIM`` fails the transaction (then
    every request of the batch goes to the general path, nothing written) unless the claim may
    be decided here; on SQLite ``_NEXT_CLAIM_MAY`` is read first.

    Returns:
        The trial, and its row as written.

    Raises:
        _GeneralPath: not claimed here; nothing changed.
        _Stale: the claim failed after the study's cache moved on; nothing of it was written.
    """
    hot = _Locked(ended.conn, ended.cache, ended.study, _TrialRow(), ended.now)
    keys = {
        "g_study": hot.cache.study_id,
        "b_now": hot.now,
        "g_worker": worker_id,
        "g_request": nxt.request_id,
    }
    reserved = None
    if db.is_sqlite:
        may = _NEXT_CLAIM_MAY_ANY_STUDY if nxt.study is None else _NEXT_CLAIM_MAY
        if not hot.conn.execute(may, keys).scalar_one():
            raise _GeneralPath
    else:
        guard = _GUARD_NEXT_CLAIM_ANY_STUDY if nxt.study is None else _GUARD_NEXT_CLAIM
        guard.run(hot.conn, keys)
        reserved = db.reserve_id("trials")
    try:
        trial = _claim(hot, worker_id, nxt.request_id, reserved)
    except _GeneralPath:
        if hot.mutated:
            raise _Stale from None
        raise
    assert hot.claimed is not None
    return trial, hot.claimed


def _decide_now(
    db: Database,
    caches: StudyCaches,
    study_id: int,
    trial_id: int,
    body: ReportRequest | CompleteRequest,
    decide: Any,
) -> Any:
    """``decide`` (``_decide_report`` or ``_decide_complete``) without waiting for a lock;
    when it ends the trial, on SQLite, the worker's next claim is decided in the same
    transaction if the study's sampler is quick (PostgreSQL decides it in the batch, see
    ``_decide_together``). None when the general path must take the request (nothing written).
    """
    trial = nxt = None
    stale = False
    try:
        with _locked(db, caches, study_id, trial_id, nowait=True) as hot:
            answer = decide(hot, trial_id, body)
            nxt = _rides(body, hot.cache, caches, study_id)
            if db.is_sqlite and nxt and _ended(answer) and _quick_to_sample(hot.cache):
                try:
                    trial, _row = _claim_next_here(db, hot, body.worker_id, nxt)
                except _GeneralPath:
                    pass  # the worker's next claim is made after this transaction
                except _Stale:
                    stale = True  # the trial's end is stored all the same
    except _GeneralPath:
        return None
    if stale:
        caches.drop(study_id)
    elif trial is not None and nxt is not None:
        caches.remember_trial(trial.id, study_id)
        caches.remember_claim_target(nxt.study, study_id)
        answer = _with_next_trial(answer, trial)
    return answer


def _with_next_trial(answer: Any, trial: ClaimedTrial) -> Any:
    """A report's or complete's answer carrying the worker's next trial."""
    if isinstance(answer, tuple):
        answer[0].next_trial = trial
        return answer
    return CompletedTrial.model_construct(**answer.__dict__, next_trial=trial)


def _guard(
    conn: Connection, study_id: int, known: _Known, now: datetime, *, claims: list[_ClaimBody]
) -> _StudyNow:
    """Lock the study, failing the transaction unless its row is ``known``'s (see ``_GUARD``)
    and ``claims`` may be decided here."""
    study = known.study
    keys: dict[str, Any] = {
        "g_study": study_id,
        "g_seq": study.seq,
        "g_state": study.state,
        "g_n_trials": study.n_trials,
        "g_budget_used": study.budget_used,
        "b_now": now,
    }
    assumed = [c for c in claims if c.assumed]
    if assumed:
        workers = sorted({c.worker_id for c in assumed})
        keys.update(
            g_workers=workers,
            g_n_workers=len(workers),
            g_requests=sorted({c.request_id for c in assumed if c.request_id is not None}),
        )
        any_study = any(c.any_study for c in assumed)
        conn.execute(_GUARD_NEW_CLAIMS_ANY_STUDY if any_study else _GUARD_NEW_CLAIMS, keys)
    else:
        (_GUARD_WITH_LEASES if claims else _GUARD).run(conn, keys)
    return replace(study, lease_ran_out=False)


def _remember(
    cache: StudyCache, known: _Known | None, study: _StudyNow, rows: Iterable[_TrialRow]
) -> None:
    """Keep the study's row and its running trials' rows as the batch left them.

    ``known``: what was known before the batch, still valid then; None to start afresh.
    """
    if known is None:
        known = cache.known_rows = _Known(cache.seq, study)
    known.seq = cache.seq
    known.study = replace(study, seq=cache.seq, lease_ran_out=False)
    for row in rows:
        if row.state == _RUNNING:
            known.trials[row.id] = row
        else:
            known.trials.pop(row.id, None)


def _guard_failed(exc: BaseException) -> bool:
    """Whether the transaction failed on ``_GUARD``: the study was not as known here."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(getattr(seen, "orig", seen), "sqlstate", None) == _GUARD_FAILED:
            return True
        seen = seen.__cause__
    return False


def _decide(hot: _Locked, q: _Queued) -> Any:
    body, trial_id = q.body, q.trial_id
    if isinstance(body, _ClaimBody):
        return _claim(hot, body.worker_id, body.request_id, body.trial_id)
    if trial_id is None:
        raise _GeneralPath
    if isinstance(body, ReportRequest):
        return _decide_report(hot, trial_id, body)
    return _decide_complete(hot, trial_id, body)


# -- claim, report, complete ---------------------------------------------------------------


def fast_claim(
    *,
    db: Database,
    caches: StudyCaches,
    worker_id: int,
    study_name: str | None,
    request_id: str | None,
    nowait: bool = False,
) -> ClaimedTrial | None:
    """A new trial sampled in the one study there is to claim from, or None.

    ``nowait``: also None when a lock is held or sampling may take long (see ``_locked``).
    Otherwise the claim waits for the study's lock with the reports and completes that wait
    for it, and is decided with them (see ``_decide_together``).

    Raises:
        StorageError: the database failed.
    """
    try:
        if not nowait and not db.is_sqlite:
            assumed = _claim_on_assumptions(db, caches, worker_id, study_name, request_id)
            if assumed is not None:
                return assumed.answer
        keys = {"b_w": worker_id, "b_req": request_id, "b_name": study_name}
        [(worker, replayed, n_running, first_running, named)] = db.read_once(_CLAIM_CONTEXT, keys)
        if worker is None or replayed is not None:
            return None  # unknown worker, or a retried claim
        study_id = named if study_name is not None else first_running if n_running == 1 else None
        if study_id is None:
            return None  # no such study, or several to choose from: the general path's call
        if not nowait:
            reserved = None if db.is_sqlite else db.reserve_id("trials")
            mine = _Queued(None, _ClaimBody(worker_id, request_id, reserved))
            claimed: ClaimedTrial | None = _decide_in_turn(db, caches, study_id, mine)
            if claimed is not None:
                caches.remember_claim_target(study_name, study_id)
            return claimed
        if not _quick_to_sample(caches.get(study_id)):
            return None
        with _locked(db, caches, study_id, nowait=nowait) as hot:
            claimed_now = _claim(hot, worker_id, request_id)
        caches.remember_claim_target(study_name, study_id)
        return claimed_now
    except _GeneralPath:
        return None


def _claim_on_assumptions(
    db: Database,
    caches: StudyCaches,
    worker_id: int,
    study_name: str | None,
    request_id: str | None,
) -> _Queued | None:
    """The claim decided without reading ``_CLAIM_CONTEXT`` first, or None to read it.

    Where the claim's study is the one the last claim naming the same study (or none) went to,
    and its rows are known here, the claim joins a batch decided under a guard, which checks
    what ``_CLAIM_CONTEXT`` would have (see ``_GUARD_NEW_CLAIMS``): one round trip less. A
    claim whose batch could not be guarded comes back undecided, having written nothing.
    """
    study_id = caches.claim_target(study_name)
    cache = None if study_id is None else caches.get(study_id)
    known = None if cache is None else cache.known_rows
    if study_id is None or known is None or known.seq != cache.seq:
        return None
    body = _ClaimBody(
        worker_id, request_id, db.reserve_id("trials"), assumed=True, any_study=study_name is None
    )
    mine = _Queued(None, body)
    _decide_in_turn(db, caches, study_id, mine)
    return None if mine.unchecked else mine


def _claim(
    hot: _Locked, worker_id: int, request_id: str | None, trial_id: int | None = None
) -> ClaimedTrial:
    """A new trial; ``trial_id``: its id, reserved ahead, else the database's (read back)."""
    cache, spec, study = hot.cache, hot.cache.spec, hot.study
    budget = spec.budget
    if (
        hot.may_complete_study()  # no new trial then, or none that counts on the budget
        or study.lease_ran_out
        or (budget.max_concurrent is not None and cache.n_running >= budget.max_concurrent)
        or cache.has_waiting()
        or study.n_trials != cache.n_trials
    ):
        raise _GeneralPath
    attrs_before = cache.study_system_attrs()
    hot.mutated = True
    asked = cache.ask()
    if asked is None or asked.was_waiting or asked.number != study.n_trials:
        raise _GeneralPath
    lease = hot.now + timedelta(seconds=budget.lease_seconds)
    new = {
        "study_id": cache.study_id,
        "number": asked.number,
        "state": TrialState.RUNNING.value,
        "params": asked.params,
        "distributions": asked.distributions,
        "system_attrs": asked.system_attrs,
        "user_attrs": {},
        "grid_id": asked.grid_id,
        "counts_budget": True,
        "attempt": 1,
        "worker_id": worker_id,
        "claim_request_id": request_id,
        "created_at": hot.now,
        "started_at": hot.now,
        "lease_expires_at": lease,
        "seq": hot.seq,
    }
    params = {f"b_{name}": value for name, value in new.items()}
    params.update(b_study=cache.study_id, b_now=hot.now)
    new_attrs = asked.study_system_attrs != attrs_before
    if new_attrs:
        params["b_study_attrs"] = asked.study_system_attrs
    if trial_id is None:
        writes = _CLAIM_WITH_STUDY_ATTRS if new_attrs else _CLAIM
        trial_id = writes.run(hot.conn, params).scalar_one()
    else:
        params["b_id"] = trial_id
        writes = _CLAIM_WITH_ID_AND_STUDY_ATTRS if new_attrs else _CLAIM_WITH_ID
        writes.run(hot.conn, params)
    study.n_trials += 1  # as _STUDY_GAINS_TRIAL left the row, for the decisions after this one
    study.budget_used += 1
    hot.claimed = _TrialRow(new, id=trial_id, **_NEW_TRIAL_NULLS)
    return ClaimedTrial(
        id=trial_id,
        study=spec.name,
        study_id=cache.study_id,
        number=asked.number,
        params=asked.params,
        training=spec.training,
        attempt=1,
        retry_of=None,
        lease_expires_at=lease,
        lease_seconds=budget.lease_seconds,
        objectives=[o.model_dump() for o in spec.objectives],
        prunes=spec.pruner.name != "none",
    )


def fast_report(
    *,
    db: Database,
    caches: StudyCaches,
    study_id: int,
    trial_id: int,
    body: ReportRequest,
    nowait: bool = False,
) -> tuple[ReportResponse, bool] | None:
    """Answer an ordinary report, or None when the general path must take it.

    Without ``nowait`` it is decided with the requests waiting for the study's lock with it
    (see ``_decide_together``).

    Returns:
        The answer, and whether the study may be complete now (the trial was pruned and the
        budget is spent): the general path checks that next.

    Raises:
        StorageError: the database failed.
    """
    if nowait:
        now: tuple[ReportResponse, bool] | None = _decide_now(
            db, caches, study_id, trial_id, body, _decide_report
        )
        return now
    answer: tuple[ReportResponse, bool] | None = _decide_in_turn(
        db, caches, study_id, _Queued(trial_id, body)
    )
    return answer


def _decide_report(
    hot: _Locked, trial_id: int, body: ReportRequest
) -> tuple[ReportResponse, bool]:
    """Store one report and the pruner's answer; ``_GeneralPath`` before anything changed."""
    hot.check_held_by(body.worker_id)
    row = hot.row
    previous = hot.cache.intermediate_value(row.number, body.step)
    if previous == body.value:  # a retry: it did not prune, or the trial would be
        return ReportResponse(should_prune=False), False
    hot.mutated = True
    result = hot.cache.report(row.number, body.step, body.value)
    params = {
        "b_study": hot.cache.study_id,
        "b_trial": trial_id,
        "b_step": body.step,
        "b_value": body.value,
        "b_prune": result.should_prune,
        "b_last_step": max(row.last_step or 0, body.step),
        "b_lease": hot.now + timedelta(seconds=hot.cache.spec.budget.lease_seconds),
        "b_seq": hot.seq,
        "b_attrs": result.system_attrs,
        "b_now": hot.now,
    }
    if result.should_prune:
        hot.cache.finish(row.number, TrialState.PRUNED, [body.value])
        params["b_values"] = [body.value]
        writes = _REPORT_PRUNES if previous is None else _REPORT_AGAIN_PRUNES
    else:
        writes = _REPORT if previous is None else _REPORT_AGAIN
    writes.run(hot.conn, params)
    row.update(
        last_step=params["b_last_step"],
        lease_expires_at=params["b_lease"],
        seq=hot.seq,
        system_attrs=result.system_attrs,
    )
    if result.should_prune:
        row.update(
            state=TrialState.PRUNED.value,
            pruned_step=body.step,
            values=[body.value],
            value=body.value,
            finished_at=hot.now,
            lease_expires_at=None,
        )
    maybe_done = result.should_prune and hot.may_complete_study()
    return ReportResponse(should_prune=result.should_prune), maybe_done


def fast_complete(
    *,
    db: Database,
    caches: StudyCaches,
    study_id: int,
    trial_id: int,
    body: CompleteRequest,
    nowait: bool = False,
) -> TrialRead | None:
    """Complete a running trial of a study that goes on running, or None.

    Without ``nowait`` it is decided with the requests waiting for the study's lock with it
    (see ``_decide_together``).

    Raises:
        StorageError: the database failed.
    """
    if not nowait:
        done: TrialRead | None = _decide_in_turn(db, caches, study_id, _Queued(trial_id, body))
        return done
    now: TrialRead | None = _decide_now(db, caches, study_id, trial_id, body, _decide_complete)
    return now


def _decide_complete(hot: _Locked, trial_id: int, body: CompleteRequest) -> TrialRead:
    """Store the trial's values; ``_GeneralPath`` before anything changed."""
    cache = hot.cache
    if len(body.values) != len(cache.spec.objectives) or hot.may_complete_study():
        raise _GeneralPath
    hot.check_held_by(body.worker_id)
    row = hot.row
    hot.mutated = True
    values = list(body.values)
    cache.finish(row.number, TrialState.COMPLETE, values)
    user_attrs = {**row.user_attrs, **body.user_attrs}
    params = {
        "b_study": cache.study_id,
        "b_trial": trial_id,
        "b_values": values,
        "b_value": values[0],
        "b_now": hot.now,
        "b_seq": hot.seq,
        "b_user": user_attrs,
    }
    _COMPLETE.run(hot.conn, params)
    row.update(state=TrialState.COMPLETE.value, seq=hot.seq)  # no longer known: not running
    return _trial_read(
        row,
        cache.spec.name,
        state=TrialState.COMPLETE,
        values=values,
        user_attrs=user_attrs,
        finished_at=hot.now,
        lease_expires_at=None,
    )


def fast_set_user_attrs(
    *,
    db: Database,
    caches: StudyCaches,
    study_id: int,
    trial_id: int,
    body: UserAttrsRequest,
    nowait: bool = False,
) -> TrialRead | None:
    """Merge user attributes into a trial this worker holds or ran (a pruned one's metrics)."""
    try:
        with _locked(db, caches, study_id, trial_id, nowait=nowait) as hot:
            row = hot.row
            if row.state == _RUNNING:
                hot.check_held_by(body.worker_id)
            elif row.worker_id != body.worker_id:
                raise _GeneralPath
            merged = {**row.user_attrs, **body.user_attrs}
            changes: dict[str, Any] = {"user_attrs": merged}
            if merged != row.user_attrs:
                params = {"b_study": study_id, "b_trial": trial_id, "b_now": hot.now}
                params.update(b_user=merged, b_seq=hot.seq)
                hot.mutated = True  # the cache holds no user attributes; its seq moves on
                _USER_ATTRS.run(hot.conn, params)
                row.update(user_attrs=merged, seq=hot.seq)
                hot.keeps_known = True
            return _trial_read(row, hot.cache.spec.name, **changes)
    except _GeneralPath:
        return None


def _trial_read(row: Row[Any], study_name: str, **changes: Any) -> TrialRead:
    """A trial as the API shows it, from its row (with the study's columns beside it)."""
    return TrialRead(**{**row._mapping, "study": study_name, **changes})
