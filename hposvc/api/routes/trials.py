"""Trial routes: the worker protocol and single-trial reads."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from hposvc.api.deps import CachesDep, DatabaseDep, TrialId
from hposvc.schemas.common import ErrorResponse
from hposvc.schemas.trials import (
    ClaimedTrial,
    ClaimRequest,
    CompletedTrial,
    CompleteRequest,
    FailRequest,
    ReleaseRequest,
    ReportRequest,
    ReportResponse,
    TrialDetail,
    TrialRead,
    UserAttrsRequest,
)
from hposvc.services import trials

router = APIRouter(prefix="/trials", tags=["trials"])
WORKER_ERRORS = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse, "description": "The worker does not hold this trial."},
    422: {"model": ErrorResponse},
}


@router.post(
    "/claim",
    responses={
        200: {"model": ClaimedTrial},
        204: {"description": "No work now."},
        **WORKER_ERRORS,
    },
    response_model=None,
)
def claim_trial(body: ClaimRequest, db: DatabaseDep, caches: CachesDep) -> ClaimedTrial | Response:
    """Lease the next trial to a worker (204 when there is none)."""
    claimed = trials.claim(
        db=db,
        caches=caches,
        worker_id=body.worker_id,
        study_name=body.study,
        request_id=body.request_id,
    )
    if claimed is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return claimed


@router.post("/{trial_id}/report", responses=WORKER_ERRORS)
def report(
    trial_id: TrialId, body: ReportRequest, db: DatabaseDep, caches: CachesDep
) -> ReportResponse:
    """Report an intermediate value; the answer says whether to prune now."""
    return trials.report(db=db, caches=caches, trial_id=trial_id, body=body)


@router.post("/{trial_id}/complete", responses=WORKER_ERRORS)
def complete(
    trial_id: TrialId, body: CompleteRequest, db: DatabaseDep, caches: CachesDep
) -> CompletedTrial:
    """Finish a trial with its objective values."""
    return trials.complete(db=db, caches=caches, trial_id=trial_id, body=body)


@router.post("/{trial_id}/fail", responses=WORKER_ERRORS)
def fail(trial_id: TrialId, body: FailRequest, db: DatabaseDep, caches: CachesDep) -> TrialRead:
    """Mark a trial failed with the reason (retried within the study's budget)."""
    return trials.fail(db=db, caches=caches, trial_id=trial_id, body=body)


@router.post("/{trial_id}/user-attrs", responses=WORKER_ERRORS)
def set_user_attrs(
    trial_id: TrialId, body: UserAttrsRequest, db: DatabaseDep, caches: CachesDep
) -> TrialRead:
    """Merge user attributes into a trial this worker holds or ran (metrics of a pruned one)."""
    return trials.set_user_attrs(db=db, caches=caches, trial_id=trial_id, body=body)


@router.post("/{trial_id}/release", responses=WORKER_ERRORS)
def release(
    trial_id: TrialId, body: ReleaseRequest, db: DatabaseDep, caches: CachesDep
) -> TrialRead:
    """Hand a trial back (worker shutting down): it runs again from its last checkpoint."""
    return trials.release(db=db, caches=caches, trial_id=trial_id, body=body)


@router.get("/{trial_id}", responses={404: {"model": ErrorResponse}})
def get_trial(trial_id: TrialId, db: DatabaseDep) -> TrialDetail:
    """A trial with its intermediate values."""
    return trials.get_trial(db=db, trial_id=trial_id)
