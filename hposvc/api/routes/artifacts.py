"""Artifact routes: checkpoints and final models of trials."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from hposvc.api.deps import ArtifactsDep, DatabaseDep, TrialId
from hposvc.schemas.common import MAX_ID, ErrorResponse
from hposvc.schemas.trials import ArtifactRead
from hposvc.services import artifacts

router = APIRouter(tags=["artifacts"])
Kind = Literal["checkpoint", "model"]
ERRORS = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
}


@router.put(
    "/trials/{trial_id}/artifacts/{kind}",
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_artifact(
    trial_id: TrialId,
    kind: Kind,
    worker_id: Annotated[int, Query(ge=1, le=MAX_ID)],
    request: Request,
    db: DatabaseDep,
    store: ArtifactsDep,
) -> ArtifactRead:
    """Store a trial's checkpoint or final model (only the worker holding it may)."""
    study_id, _ = await run_in_threadpool(
        artifacts.writable_trial, db=db, trial_id=trial_id, worker_id=worker_id, kind=kind
    )
    return await artifacts.save(store, study_id, trial_id, kind, request.stream())


@router.get(
    "/trials/{trial_id}/artifacts/{kind}",
    responses={404: {"model": ErrorResponse}},
    response_class=FileResponse,
)
def download_artifact(
    trial_id: TrialId, kind: Kind, db: DatabaseDep, store: ArtifactsDep
) -> FileResponse:
    """Download a trial's checkpoint (a retry gets its earlier attempt's) or final model."""
    path = artifacts.find(db=db, store=store, trial_id=trial_id, kind=kind)
    return FileResponse(
        path, media_type="application/octet-stream", filename=f"trial-{trial_id}-{kind}.pt"
    )


@router.get(
    "/studies/{study_name}/best-model",
    responses={404: {"model": ErrorResponse}},
    response_class=FileResponse,
)
def download_best_model(study_name: str, db: DatabaseDep, store: ArtifactsDep) -> FileResponse:
    """Download the final model of the study's best trial."""
    trial_id, path = artifacts.best_model(db=db, store=store, study_name=study_name)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"{study_name}-trial-{trial_id}-model.pt",
    )
