"""Finishing trials, lease expiry and retries of failed trials."""

from __future__ import annotations

import logging

from sqlalchemy import select

from hposvc.db.base import utcnow
from hposvc.db.models import Trial
from hposvc.db.session import Database
from hposvc.domain.states import StudyState, TrialState
from hposvc.errors import NotFoundError
from hposvc.samplers import StudyCaches
from hposvc.services.decisions import Decision, decide

logger = logging.getLogger(__name__)


def finish_without_commit(
    d: Decision,
    trial: Trial,
    state: TrialState,
    *,
    values: list[float] | None = None,
    reason: str | None = None,
    requeue: bool | None = None,
) -> None:
    """Write a trial's final state to its row and to the cache.

    A failed trial runs again (same parameters, attempt + 1) while the study's retry budget
    lasts, or whenever ``requeue`` is true (a worker handing a trial back is not its fault).
    """
    d.dirty = True
    trial.state = state.value
    trial.values = values
    trial.value = values[0] if values else None
    trial.finished_at = d.now
    trial.lease_expires_at = None
    if reason is not None:
        trial.fail_reason = reason
    d.cache.finish(trial.number, state, values)
    d.touch(trial)
    if requeue is None:
        requeue = trial.attempt <= d.spec.budget.max_retries
    if state is TrialState.FAIL and requeue:
        _retry_without_commit(d, trial)


def _retry_without_commit(d: Decision, failed: Trial) -> None:
    if d.study.state in (StudyState.STOPPED.value, StudyState.COMPLETED.value):
        return
    retry = Trial(
        study_id=d.study.id,
        state=TrialState.WAITING.value,
        fixed_params=dict(failed.params),
        attempt=failed.attempt + 1,
        retry_of=failed.id,
        counts_budget=False,
        created_at=d.now,
    )
    d.add_waiting(retry)
    logger.info(
        "trial %d of study %d will run again as trial %d (attempt %d)",
        failed.number,
        d.study.id,
        retry.number,
        retry.attempt,
    )


def expire_leases_without_commit(d: Decision) -> int:
    """Fail the study's running trials whose lease ran out. Returns how many."""
    expired = list(
        d.session.scalars(
            select(Trial)
            .where(
                Trial.study_id == d.study.id,
                Trial.state == TrialState.RUNNING.value,
                Trial.lease_expires_at < d.now,
            )
            .order_by(Trial.number)
            .with_for_update()
        )
    )
    for trial in expired:
        expire_trial_without_commit(d, trial)
    if expired:
        d.complete_if_done()
    return len(expired)


def expire_trial_without_commit(d: Decision, trial: Trial) -> str:
    """Fail one running trial whose lease ran out (and re-queue it). Returns the reason."""
    reason = (
        f"lease expired at {trial.lease_expires_at.isoformat()}: "  # type: ignore[union-attr]
        f"worker {trial.worker_id} went silent"
    )
    logger.warning("trial %d of study %d: %s", trial.number, d.study.id, reason)
    finish_without_commit(d, trial, TrialState.FAIL, reason=reason)
    return reason


def expire_all(*, db: Database, caches: StudyCaches) -> int:
    """Sweep every study with running trials past their lease (run periodically)."""
    with db.session() as session:
        study_ids = list(
            session.scalars(
                select(Trial.study_id)
                .where(Trial.state == TrialState.RUNNING.value, Trial.lease_expires_at < utcnow())
                .distinct()
            )
        )
    total = 0
    for study_id in study_ids:
        try:
            with decide(db=db, caches=caches, study_id=study_id) as d:
                total += expire_leases_without_commit(d)
        except NotFoundError:
            continue
    return total
