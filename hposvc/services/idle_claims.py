"""Claims with nothing to hand out, answered from one read without locking a study.

At the end of every study (its budget handed out, its last trials running, for as long as the
longest of them runs) and all through a study that caps its concurrent trials, idle worker
slots claim every ``poll_seconds`` and get no trial. Decided like any claim, each of them locks
the study and reads and writes under that lock, so a few hundred idle slots keep the lock and
the server busy and the reports of the trials that do run wait (``benchmarks/idle_polls.py``).

So once claims of one kind (naming the same study, or none) have come back empty in this
process, the next one of that kind first reads, in one statement and without a lock, whether
the claim would get nothing and write nothing: the worker is registered, the claim is not a
retry of one that got a trial, and no study it could claim from has a trial for it, each
either not running, or running with no trial waiting, no lease run out, and either its cap of
concurrent trials reached, or its budget (trials, time or grid) spent while trials still run
(when none runs, the claim completes the study: a write). Proven, the answer is no trial, the
answer the decision would give at the moment of the read. Otherwise the claim is decided as
before, at the cost of that one read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, bindparam, func, literal, select

from hposvc.db.base import utcnow
from hposvc.db.models import Study, Trial, Worker
from hposvc.db.session import Database
from hposvc.domain.states import StudyState, TrialState
from hposvc.samplers import StudyCache, StudyCaches

_studies, _trials, _workers = Study.__table__, Trial.__table__, Worker.__table__


def _facts(which_studies: Any) -> Any:
    """Per study the claim could go to (none: one row of nulls), what proves it idle."""

    def trials_in(state: TrialState, *also: Any) -> Any:
        where = and_(_trials.c.study_id == _studies.c.id, _trials.c.state == state.value, *also)
        return select(func.count()).select_from(_trials).where(where).scalar_subquery()

    one_row = select(literal(1).label("one")).subquery()
    return select(
        select(_workers.c.id).where(_workers.c.id == bindparam("b_w")).scalar_subquery(),
        select(_trials.c.id)
        .where(_trials.c.worker_id == bindparam("b_w"))
        .where(_trials.c.claim_request_id == bindparam("b_req", type_=String))
        .limit(1)
        .scalar_subquery(),
        _studies.c.id,
        _studies.c.state,
        _studies.c.budget_used,
        _studies.c.created_at,
        trials_in(TrialState.RUNNING),
        trials_in(TrialState.WAITING),
        trials_in(TrialState.RUNNING, _trials.c.lease_expires_at < bindparam("b_now")),
    ).select_from(one_row.outerjoin(_studies, which_studies))


_FACTS_NAMED = _facts(_studies.c.name == bindparam("b_name"))
_FACTS_ANY = _facts(_studies.c.state == StudyState.RUNNING.value)


def nothing_to_claim(
    *,
    db: Database,
    caches: StudyCaches,
    worker_id: int,
    study_name: str | None,
    request_id: str | None,
) -> bool:
    """True when the claim is proven to get no trial and write nothing (see the module)."""
    if not caches.claims_came_back_empty(study_name):
        return False
    now = utcnow()
    keys = {"b_w": worker_id, "b_req": request_id, "b_now": now}
    if study_name is None:
        rows = db.read_once(_FACTS_ANY, keys)
    else:
        rows = db.read_once(_FACTS_NAMED, {**keys, "b_name": study_name})
    for worker, replayed, study_id, state, used, created, running, waiting, expired in rows:
        if worker is None or replayed is not None:
            return False  # the decision's to answer: an unknown worker, a retried claim
        if study_id is None:
            return study_name is None  # no study running; no such study is the decision's 404
        if state != StudyState.RUNNING.value:
            continue
        cache = caches.get(study_id)
        if cache is None or waiting or expired:
            return False
        if not _no_trial_to_create(caches, cache, used, created, running, now):
            return False
    return True


def _no_trial_to_create(
    caches: StudyCaches,
    cache: StudyCache,
    budget_used: int,
    created_at: datetime,
    running: int,
    now: datetime,
) -> bool:
    budget = cache.spec.budget
    if budget.max_concurrent is not None and running >= budget.max_concurrent:
        return True
    if running == 0:
        return False
    limit = budget.time_limit_seconds
    if budget_used >= budget.max_trials or (
        limit is not None and (now - created_at).total_seconds() >= limit
    ):
        return True
    # A spent grid stays spent, unless a decision in flight used its last point and then
    # rolls back: read it only between decisions.
    lock = caches.lock(cache.study_id)
    if not lock.acquire(blocking=False):
        return False
    try:
        return caches.get(cache.study_id) is cache and not cache.can_create()
    finally:
        lock.release()
