"""Study routes: create (JSON or YAML), list, get, steer, delete, enqueue, list trials."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import yaml
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from hposvc.api.deps import ArtifactsDep, CachesDep, DatabaseDep
from hposvc.api.errors import describe_validation_errors
from hposvc.domain.states import StudyState, TrialState
from hposvc.errors import InvalidRequestError
from hposvc.schemas.common import MAX_ID, ErrorResponse, Page
from hposvc.schemas.studies import (
    EnqueueRequest,
    StudyAction,
    StudyRead,
    StudySpec,
    StudySummary,
)
from hposvc.schemas.trials import TrialRead
from hposvc.services import studies, trials

router = APIRouter(prefix="/studies", tags=["studies"])
NOT_FOUND = {404: {"model": ErrorResponse}}
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def parse_spec(raw: bytes, content_type: str) -> StudySpec:
    """A study spec from a JSON or YAML document.

    Raises:
        InvalidRequestError: not JSON/YAML, or not a valid spec (the message names the field).
    """
    is_yaml = content_type.split(";")[0].strip().lower() in YAML_TYPES
    try:
        document = yaml.safe_load(raw) if is_yaml else json.loads(raw)
    except (yaml.YAMLError, ValueError) as exc:
        kind = "YAML" if is_yaml else "JSON"
        raise InvalidRequestError(f"body: malformed {kind}: {exc}", code="malformed_body") from exc
    if not isinstance(document, dict):
        raise InvalidRequestError("body: a study spec must be an object")
    try:
        return StudySpec.model_validate(document)
    except ValidationError as exc:
        detail, _ = describe_validation_errors(exc.errors())
        raise InvalidRequestError(detail) from exc


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/StudySpec"}},
                "application/yaml": {"schema": {"$ref": "#/components/schemas/StudySpec"}},
            },
        }
    },
)
async def create_study(request: Request, db: DatabaseDep, store: ArtifactsDep) -> StudyRead:
    """Create a study from a spec (JSON, or YAML with a YAML content type)."""
    spec = parse_spec(await request.body(), request.headers.get("content-type", ""))
    return await run_in_threadpool(studies.create_study, db=db, spec=spec, store=store)


@router.get("")
def list_studies(
    db: DatabaseDep,
    state: StudyState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> Page[StudyRead]:
    """List studies, newest first."""
    return studies.list_studies(db=db, state=state, limit=limit, offset=offset)


@router.get("/{study_name}", responses=NOT_FOUND)
def get_study(study_name: str, db: DatabaseDep) -> StudySummary:
    """A study with its trial counts and best trial (or Pareto front)."""
    return studies.get_study(db=db, name=study_name)


@router.post("/{study_name}/actions", responses={**NOT_FOUND, 409: {"model": ErrorResponse}})
def act_on_study(
    study_name: str, body: StudyAction, db: DatabaseDep, caches: CachesDep
) -> StudyRead:
    """Pause, resume or stop a study."""
    return studies.act_on_study(db=db, caches=caches, name=study_name, action=body.action)


@router.delete("/{study_name}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_study(
    study_name: str, db: DatabaseDep, caches: CachesDep, store: ArtifactsDep
) -> Response:
    """Delete a study, its trials and their artifacts."""
    studies.delete_study(db=db, caches=caches, name=study_name, store=store)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{study_name}/trials",
    status_code=status.HTTP_201_CREATED,
    responses={**NOT_FOUND, 409: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
def enqueue_trial(
    study_name: str, body: EnqueueRequest, db: DatabaseDep, caches: CachesDep
) -> TrialRead:
    """Queue a trial with fixed parameters; workers get it before new samples."""
    return studies.enqueue_trial(db=db, caches=caches, name=study_name, body=body)


@router.get("/{study_name}/trials", responses=NOT_FOUND)
def list_trials(
    study_name: str,
    db: DatabaseDep,
    state: TrialState | None = None,
    sort: Literal["number", "value", "state", "created_at", "finished_at"] = "number",
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> Page[TrialRead]:
    """A study's trials, filtered by state, sorted by any column."""
    return trials.list_trials(
        db=db,
        study_name=study_name,
        state=state,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        offset=offset,
    )
