"""Trials: the worker protocol (claim, report, complete, fail) and the user's reads.

Every worker call is idempotent: a retry after a lost response changes nothing and gets the
same answer. A worker that no longer holds a trial gets ``LeaseLostError`` (HTTP 409).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hposvc.db.models import (
    IntermediateValue,
    Study,
    Trial,
    find_study_by_name,
    find_trial_by_id,
    find_worker_by_id,
)
from hposvc.db.session import Database
from hposvc.domain.states import StudyState, TrialState
from hposvc.errors import (
    HposvcError,
    InvalidRequestError,
    InvalidStateError,
    LeaseLostError,
    NotFoundError,
)
from hposvc.samplers import StudyCaches
from hposvc.schemas.common import Page
from hposvc.schemas.trials import (
    ClaimedTrial,
    CompletedTrial,
    CompleteRequest,
    FailRequest,
    NextClaim,
    ReleaseRequest,
    ReportRequest,
    ReportResponse,
    TrialDetail,
    TrialRead,
    UserAttrsRequest,
)
from hposvc.schemas.trials import (
    IntermediateValue as IntermediateValueRead,
)
from hposvc.services.decisions import Decision, decide
from hposvc.services.hot_paths import (
    fast_claim,
    fast_complete,
    fast_report,
    fast_set_user_attrs,
)
from hposvc.services.idle_claims import nothing_to_claim
from hposvc.services.leases import (
    expire_leases_without_commit,
    expire_trial_without_commit,
    finish_without_commit,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
SORTABLE = {"number", "value", "state", "created_at", "finished_at"}


def trial_read(trial: Trial, study_name: str) -> TrialRead:
    return TrialRead(
        id=trial.id,
        study_id=trial.study_id,
        study=study_name,
        number=trial.number,
        state=TrialState(trial.state),
        params=trial.params,
        values=trial.values,
        user_attrs=trial.user_attrs,
        attempt=trial.attempt,
        retry_of=trial.retry_of,
        worker_id=trial.worker_id,
        fail_reason=trial.fail_reason,
        pruned_step=trial.pruned_step,
        last_step=trial.last_step,
        created_at=trial.created_at,
        started_at=trial.started_at,
        finished_at=trial.finished_at,
        lease_expires_at=trial.lease_expires_at,
    )


def _claimed(trial: Trial, d: Decision) -> ClaimedTrial:
    assert trial.lease_expires_at is not None
    return ClaimedTrial(
        id=trial.id,
        study=d.study.name,
        study_id=d.study.id,
        number=trial.number,
        params=trial.params,
        training=d.spec.training,
        attempt=trial.attempt,
        retry_of=trial.retry_of,
        lease_expires_at=trial.lease_expires_at,
        lease_seconds=d.spec.budget.lease_seconds,
        objectives=[o.model_dump() for o in d.spec.objectives],
        prunes=d.spec.pruner.name != "none",
    )


# -- claim ---------------------------------------------------------------------------------


def claim(
    *,
    db: Database,
    caches: StudyCaches,
    worker_id: int,
    study_name: str | None = None,
    request_id: str | None = None,
) -> ClaimedTrial | None:
    """Hand the worker a trial, or None when no study has work for it now.

    Raises:
        NotFoundError: unknown worker or study.
    """
    keys = {"worker_id": worker_id, "study_name": study_name, "request_id": request_id}
    if nothing_to_claim(db=db, caches=caches, **keys):
        return None
    claimed = _claim(db, caches, **keys)
    caches.note_claim(study_name, got_trial=claimed is not None)
    return claimed


def _claim(
    db: Database,
    caches: StudyCaches,
    worker_id: int,
    study_name: str | None,
    request_id: str | None,
) -> ClaimedTrial | None:
    keys = {"worker_id": worker_id, "study_name": study_name, "request_id": request_id}
    fast = _hot_claim(db, caches, keys, nowait=False)
    if fast is not None:
        return fast
    with db.session() as session:
        find_worker_by_id(session, worker_id)
        if request_id is not None:
            previous = session.scalars(
                select(Trial).where(
                    Trial.worker_id == worker_id, Trial.claim_request_id == request_id
                )
            ).first()
            if previous is not None:
                study_id = previous.study_id
                candidates = [study_id]
            else:
                candidates = None
        else:
            previous, candidates = None, None
        if candidates is None:
            if study_name is not None:
                candidates = [find_study_by_name(session, study_name).id]
            else:
                candidates = list(
                    session.scalars(
                        select(Study.id)
                        .where(Study.state == StudyState.RUNNING.value)
                        .order_by(Study.id)
                    )
                )
    for study_id in candidates:
        try:
            with decide(db=db, caches=caches, study_id=study_id) as d:
                if previous is not None:
                    return _replay_claim(d, worker_id, request_id)
                claimed = _claim_in_study(d, worker_id, request_id)
            if claimed is not None:
                caches.remember_trial(claimed.id, claimed.study_id)
                return claimed
        except NotFoundError:
            if study_name is not None:
                raise
    return None


def claim_next(
    *, db: Database, caches: StudyCaches, worker_id: int, next_claim: NextClaim
) -> ClaimedTrial | None:
    """The claim a worker sent with the request that ended its trial (see ``NextClaim``).

    None when there is no trial now, or when the claim failed: the request that carried it
    has its answer all the same, and the worker claims again itself, which reports the error.
    """
    try:
        return claim(
            db=db,
            caches=caches,
            worker_id=worker_id,
            study_name=next_claim.study,
            request_id=next_claim.request_id,
        )
    except HposvcError as exc:
        logger.info("worker %d: its next claim is left to it: %s", worker_id, exc)
        return None


def _replay_claim(d: Decision, worker_id: int, request_id: str | None) -> ClaimedTrial:
    trial = d.session.scalars(
        select(Trial).where(Trial.worker_id == worker_id, Trial.claim_request_id == request_id)
    ).one()
    if trial.state != TrialState.RUNNING.value:
        raise LeaseLostError(
            f"trial {trial.id} claimed with request {request_id!r} is {trial.state} now"
        )
    return _claimed(trial, d)


def _claim_in_study(d: Decision, worker_id: int, request_id: str | None) -> ClaimedTrial | None:
    expire_leases_without_commit(d)
    study, budget = d.study, d.spec.budget
    if study.state != StudyState.RUNNING.value:
        return None
    running = d.count_trials(TrialState.RUNNING)
    if budget.max_concurrent is not None and running >= budget.max_concurrent:
        return None
    may_create = study.budget_used < budget.max_trials and not d.time_is_up()
    if not d.cache.has_waiting() and not (may_create and d.cache.can_create()):
        d.complete_if_done(running=running)
        return None
    d.dirty = True
    asked = d.cache.ask()
    if asked is None:
        d.complete_if_done(running=running)
        return None
    if asked.was_waiting:
        trial = d.session.scalars(
            select(Trial).where(Trial.study_id == study.id, Trial.number == asked.number)
        ).one()
        if trial.state != TrialState.WAITING.value:
            raise InvalidStateError(f"trial {trial.id} was not waiting")
    else:
        if asked.number != study.n_trials:
            raise InvalidStateError(f"study {study.id} numbering diverged")
        trial = Trial(study_id=study.id, number=asked.number, counts_budget=True, attempt=1)
        d.session.add(trial)
        study.n_trials += 1
        study.budget_used += 1
    trial.state = TrialState.RUNNING.value
    trial.params = asked.params
    trial.distributions = asked.distributions
    trial.system_attrs = asked.system_attrs
    trial.grid_id = asked.grid_id
    trial.worker_id = worker_id
    trial.claim_request_id = request_id
    trial.started_at = d.now
    trial.lease_expires_at = d.now + timedelta(seconds=budget.lease_seconds)
    d.set_study_attrs(asked.study_system_attrs)
    d.touch(trial)
    d.session.flush()
    return _claimed(trial, d)


# -- report / complete / fail --------------------------------------------------------------


def _study_of_trial(db: Database, caches: StudyCaches, trial_id: int) -> int:
    """The study a trial belongs to (remembered: it never changes for a trial id)."""
    study_id = caches.study_of_trial(trial_id)
    if study_id is not None:
        return study_id
    with db.session() as session:
        study_id = session.scalar(select(Trial.study_id).where(Trial.id == trial_id))
    if study_id is None:
        raise NotFoundError(f"trial {trial_id} not found", code="trial_not_found")
    caches.remember_trial(trial_id, study_id)
    return study_id


def _on_held_trial(
    db: Database,
    caches: StudyCaches,
    trial_id: int,
    worker_id: int,
    action: Callable[[Decision, Trial], T],
) -> T:
    """Run ``action`` on a trial the worker holds, inside its study's decision.

    A lease that ran out is expired here (and committed) before the worker hears 409.

    Raises:
        NotFoundError: unknown trial.
        LeaseLostError: another worker holds the trial, or its lease ran out.
    """
    for attempt in range(2):
        study_id = _study_of_trial(db, caches, trial_id)
        expired: str | None = None
        with decide(db=db, caches=caches, study_id=study_id) as d:
            trial = d.session.get(Trial, trial_id)
            if trial is None or trial.study_id != study_id:
                caches.forget_trial(trial_id)  # its study was deleted; the id may be reused
                if attempt == 0:
                    continue
                raise NotFoundError(f"trial {trial_id} not found", code="trial_not_found")
            if trial.worker_id != worker_id:
                raise LeaseLostError(
                    f"trial {trial_id} is not held by worker {worker_id}"
                    + (f" (held by worker {trial.worker_id})" if trial.worker_id else "")
                )
            lease = trial.lease_expires_at
            if trial.state == TrialState.RUNNING.value and lease is not None and lease < d.now:
                expired = expire_trial_without_commit(d, trial)
                d.complete_if_done()
            else:
                return action(d, trial)
        raise LeaseLostError(f"trial {trial_id}: {expired}")
    raise NotFoundError(f"trial {trial_id} not found", code="trial_not_found")


def report(
    *, db: Database, caches: StudyCaches, trial_id: int, body: ReportRequest
) -> ReportResponse:
    """Store an intermediate value; the pruner decides whether the trial stops here.

    A report that prunes the trial claims the worker's next trial when it asks to.

    Raises:
        NotFoundError: unknown trial.
        LeaseLostError: the worker does not hold the trial (its lease expired, or it finished).
    """
    answer = _report(db=db, caches=caches, trial_id=trial_id, body=body)
    if answer.should_prune and body.next_claim is not None and answer.next_trial is None:
        answer.next_trial = claim_next(
            db=db, caches=caches, worker_id=body.worker_id, next_claim=body.next_claim
        )
    return answer


def _report(
    *, db: Database, caches: StudyCaches, trial_id: int, body: ReportRequest
) -> ReportResponse:
    study_id = _study_of_trial(db, caches, trial_id)
    fast = fast_report(db=db, caches=caches, study_id=study_id, trial_id=trial_id, body=body)
    if fast is not None:
        answer, maybe_done = fast
        if maybe_done:  # the pruned trial may have been the study's last
            complete_study_if_done(db=db, caches=caches, study_id=study_id)
        return answer

    def act(d: Decision, trial: Trial) -> ReportResponse:
        if trial.state == TrialState.PRUNED.value:
            return ReportResponse(should_prune=True)
        if trial.state != TrialState.RUNNING.value:
            raise LeaseLostError(f"trial {trial_id} is {trial.state}, not running")
        existing = d.session.get(IntermediateValue, (trial.id, body.step))
        if existing is not None and existing.value == body.value:
            return ReportResponse(should_prune=existing.should_prune)
        d.dirty = True
        result = d.cache.report(trial.number, body.step, body.value)
        if existing is None:
            existing = IntermediateValue(trial_id=trial.id, step=body.step, value=body.value)
            d.session.add(existing)
        existing.value = body.value
        existing.should_prune = result.should_prune
        if result.system_attrs != trial.system_attrs:
            trial.system_attrs = result.system_attrs
        trial.last_step = max(trial.last_step or 0, body.step)
        trial.lease_expires_at = d.now + timedelta(seconds=d.spec.budget.lease_seconds)
        if result.should_prune:
            trial.pruned_step = body.step
            finish_without_commit(d, trial, TrialState.PRUNED, values=[body.value])
        d.touch(trial)
        return ReportResponse(should_prune=result.should_prune)

    return _on_held_trial(db, caches, trial_id, body.worker_id, act)


def complete_study_if_done(*, db: Database, caches: StudyCaches, study_id: int) -> None:
    """Complete the study if its budget is spent and nothing runs any more."""
    with decide(db=db, caches=caches, study_id=study_id) as d:
        d.complete_if_done()


def complete(
    *, db: Database, caches: StudyCaches, trial_id: int, body: CompleteRequest
) -> CompletedTrial:
    """Finish a trial with its objective values, and claim the worker's next trial when it
    asks to.

    Raises:
        NotFoundError: unknown trial.
        InvalidRequestError: wrong number of values.
        LeaseLostError: the worker does not hold the trial any more.
        InvalidStateError: the trial already finished with other values.
    """
    answer = _completed(_complete(db=db, caches=caches, trial_id=trial_id, body=body))
    if body.next_claim is not None and answer.next_trial is None:
        answer.next_trial = claim_next(
            db=db, caches=caches, worker_id=body.worker_id, next_claim=body.next_claim
        )
    return answer


def _completed(trial: TrialRead) -> CompletedTrial:
    return CompletedTrial.model_construct(**trial.__dict__)


def _complete(
    *, db: Database, caches: StudyCaches, trial_id: int, body: CompleteRequest
) -> TrialRead:
    study_id = _study_of_trial(db, caches, trial_id)
    fast = fast_complete(db=db, caches=caches, study_id=study_id, trial_id=trial_id, body=body)
    if fast is not None:
        return fast

    def act(d: Decision, trial: Trial) -> TrialRead:
        n = len(d.spec.objectives)
        if len(body.values) != n:
            raise InvalidRequestError(
                f"values: the study has {n} objective(s), got {len(body.values)} values"
            )
        if trial.state == TrialState.COMPLETE.value:
            if trial.values != body.values:
                raise InvalidStateError(f"trial {trial_id} already completed with other values")
            return trial_read(trial, d.study.name)
        if trial.state == TrialState.PRUNED.value:
            # The worker learns of the prune from its report; its metrics are still kept.
            if body.user_attrs and body.user_attrs != trial.user_attrs:
                trial.user_attrs = {**trial.user_attrs, **body.user_attrs}
                d.touch(trial)
            return trial_read(trial, d.study.name)
        if trial.state != TrialState.RUNNING.value:
            raise LeaseLostError(f"trial {trial_id} is {trial.state}, not running")
        d.dirty = True
        trial.user_attrs = {**trial.user_attrs, **body.user_attrs}
        finish_without_commit(d, trial, TrialState.COMPLETE, values=list(body.values))
        d.touch(trial)
        d.complete_if_done()
        return trial_read(trial, d.study.name)

    return _on_held_trial(db, caches, trial_id, body.worker_id, act)


def fail(*, db: Database, caches: StudyCaches, trial_id: int, body: FailRequest) -> TrialRead:
    """Mark a trial failed; within the study's retry budget its parameters run again.

    Raises:
        NotFoundError: unknown trial.
        LeaseLostError: the worker does not hold the trial any more.
        InvalidStateError: the trial already completed.
    """

    def act(d: Decision, trial: Trial) -> TrialRead:
        if trial.state in (TrialState.FAIL.value, TrialState.PRUNED.value):
            return trial_read(trial, d.study.name)
        if trial.state != TrialState.RUNNING.value:
            raise InvalidStateError(f"trial {trial_id} is {trial.state}, it cannot fail now")
        d.dirty = True
        trial.user_attrs = {**trial.user_attrs, **body.user_attrs}
        requeue = None if body.retry else False  # None: within the study's retry budget
        finish_without_commit(d, trial, TrialState.FAIL, reason=body.reason, requeue=requeue)
        d.touch(trial)
        d.complete_if_done()
        return trial_read(trial, d.study.name)

    return _on_held_trial(db, caches, trial_id, body.worker_id, act)


def set_user_attrs(
    *, db: Database, caches: StudyCaches, trial_id: int, body: UserAttrsRequest
) -> TrialRead:
    """Merge user attributes (metrics, why it stopped) into a trial the worker holds or ran.

    Raises:
        NotFoundError: unknown trial.
        LeaseLostError: another worker holds the trial, or its lease expired.
    """
    study_id = _study_of_trial(db, caches, trial_id)
    fast = fast_set_user_attrs(
        db=db, caches=caches, study_id=study_id, trial_id=trial_id, body=body
    )
    if fast is not None:
        return fast

    def act(d: Decision, trial: Trial) -> TrialRead:
        merged = {**trial.user_attrs, **body.user_attrs}
        if merged != trial.user_attrs:
            trial.user_attrs = merged
            d.touch(trial)
        return trial_read(trial, d.study.name)

    return _on_held_trial(db, caches, trial_id, body.worker_id, act)


# -- answered at once -----------------------------------------------------------------------
# The hot paths, taking no lock that is held and no sample that may take long: the answer, or
# None having written nothing (the caller then makes the call above, which may wait). The
# server answers these on its event loop, without the hand-off to a thread.


def claim_now(
    *,
    db: Database,
    caches: StudyCaches,
    worker_id: int,
    study_name: str | None,
    request_id: str | None,
) -> ClaimedTrial | None:
    """``claim``'s new trial, or None."""
    if caches.claims_came_back_empty(study_name):
        return None  # likely nothing to claim: ``claim`` finds out without locking the study
    keys = {"worker_id": worker_id, "study_name": study_name, "request_id": request_id}
    return _hot_claim(db, caches, keys, nowait=True)


def _hot_claim(
    db: Database, caches: StudyCaches, keys: dict[str, Any], *, nowait: bool
) -> ClaimedTrial | None:
    """A trial claimed on the hot path (``fast_claim``), remembered as its study's, or None."""
    fast = fast_claim(db=db, caches=caches, nowait=nowait, **keys)
    if fast is not None:
        caches.remember_trial(fast.id, fast.study_id)
    return fast


Rest = Callable[[], None] | None  # what is left to do before the answer goes out (may wait)


def report_now(
    *, db: Database, caches: StudyCaches, trial_id: int, body: ReportRequest
) -> tuple[ReportResponse, Rest] | None:
    """``report``'s answer and what is left of it, or None."""
    fast = _on_known_trial(fast_report, db=db, caches=caches, trial_id=trial_id, body=body)
    if fast is None:
        return None
    answer, maybe_done = fast
    study_id = caches.study_of_trial(trial_id) if maybe_done else None
    check: Rest = None
    if study_id is not None:
        check = partial(complete_study_if_done, db=db, caches=caches, study_id=study_id)
    if not answer.should_prune or body.next_claim is None or answer.next_trial is not None:
        return answer, check
    return answer, _next_now(db, caches, body.worker_id, body.next_claim, answer, check)


def complete_now(
    *, db: Database, caches: StudyCaches, trial_id: int, body: CompleteRequest
) -> tuple[CompletedTrial, Rest] | None:
    """``complete``'s answer and what is left of it, or None."""
    fast = _on_known_trial(fast_complete, db=db, caches=caches, trial_id=trial_id, body=body)
    if fast is None:
        return None
    answer = _completed(fast)
    if body.next_claim is None or answer.next_trial is not None:
        return answer, None
    return answer, _next_now(db, caches, body.worker_id, body.next_claim, answer, None)


def _next_now(
    db: Database,
    caches: StudyCaches,
    worker_id: int,
    next_claim: NextClaim,
    answer: ReportResponse | CompletedTrial,
    before: Rest,
) -> Rest:
    """Claim the worker's next trial into ``answer`` now if that can be done at once (and
    nothing is left ``before`` it); else what is left to do, ``before`` first."""
    if before is None:
        answer.next_trial = claim_now(
            db=db,
            caches=caches,
            worker_id=worker_id,
            study_name=next_claim.study,
            request_id=next_claim.request_id,
        )
        if answer.next_trial is not None:
            return None

    def rest() -> None:
        if before is not None:
            before()
        answer.next_trial = claim_next(
            db=db, caches=caches, worker_id=worker_id, next_claim=next_claim
        )

    return rest


def set_user_attrs_now(
    *, db: Database, caches: StudyCaches, trial_id: int, body: UserAttrsRequest
) -> TrialRead | None:
    """``set_user_attrs``'s answer, or None."""
    return _on_known_trial(fast_set_user_attrs, db=db, caches=caches, trial_id=trial_id, body=body)


def _on_known_trial(
    fast: Callable[..., T | None], *, db: Database, caches: StudyCaches, trial_id: int, body: Any
) -> T | None:
    """``fast`` without waiting, for a trial whose study this process knows, or None."""
    study_id = caches.study_of_trial(trial_id)
    if study_id is None:
        return None
    return fast(db=db, caches=caches, study_id=study_id, trial_id=trial_id, body=body, nowait=True)


def release(
    *, db: Database, caches: StudyCaches, trial_id: int, body: ReleaseRequest
) -> TrialRead:
    """A worker hands a trial back (it is shutting down): it runs again, resuming from its
    last checkpoint, whatever the retry budget.

    Raises:
        NotFoundError: unknown trial.
        LeaseLostError: the worker does not hold the trial any more.
    """

    def act(d: Decision, trial: Trial) -> TrialRead:
        if trial.state != TrialState.RUNNING.value:
            if trial.state == TrialState.FAIL.value:
                return trial_read(trial, d.study.name)
            raise LeaseLostError(f"trial {trial_id} is {trial.state}, not running")
        reason = f"handed back by worker {body.worker_id}: {body.reason}"
        finish_without_commit(d, trial, TrialState.FAIL, reason=reason, requeue=True)
        return trial_read(trial, d.study.name)

    return _on_held_trial(db, caches, trial_id, body.worker_id, act)


# -- reads ---------------------------------------------------------------------------------


def get_trial(*, db: Database, trial_id: int) -> TrialDetail:
    """Raises: NotFoundError."""
    with db.session() as session:
        trial = find_trial_by_id(session, trial_id)
        name = session.scalar(select(Study.name).where(Study.id == trial.study_id))
        steps = session.execute(
            select(IntermediateValue.step, IntermediateValue.value)
            .where(IntermediateValue.trial_id == trial.id)
            .order_by(IntermediateValue.step)
        )
        return TrialDetail(
            **trial_read(trial, name or "").model_dump(),
            intermediate_values=[IntermediateValueRead(step=s, value=v) for s, v in steps],
        )


def list_trials(
    *,
    db: Database,
    study_name: str,
    state: TrialState | None = None,
    sort: str = "number",
    descending: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> Page[TrialRead]:
    """Raises: NotFoundError, InvalidRequestError (unknown sort column)."""
    if sort not in SORTABLE:
        raise InvalidRequestError(f"sort: must be one of {sorted(SORTABLE)}")
    column: Any = getattr(Trial, sort)
    order = column.desc() if descending else column.asc()
    if sort == "value":
        order = order.nulls_last()
    with db.session() as session:
        study = find_study_by_name(session, study_name)
        return trial_page(session, study, state, [order, Trial.number], limit, offset)


def trial_page(
    session: Session,
    study: Study,
    state: TrialState | None,
    order_by: list[Any],
    limit: int,
    offset: int,
) -> Page[TrialRead]:
    """One page of a study's trials (in ``state`` if given) in the order of ``order_by``."""
    where = [Trial.study_id == study.id]
    if state is not None:
        where.append(Trial.state == state.value)
    total = session.scalar(select(func.count()).select_from(Trial).where(*where)) or 0
    rows = session.scalars(
        select(Trial).where(*where).order_by(*order_by).limit(limit).offset(offset)
    )
    return Page[TrialRead](
        items=[trial_read(t, study.name) for t in rows], total=total, limit=limit, offset=offset
    )
