"""All API routes under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from hposvc.api.deps import require_token
from hposvc.api.routes import artifacts, charts, health, studies, trials, workers
from hposvc.schemas.common import ErrorResponse

# Every route answers bad input with the same ErrorResponse body (not FastAPI's default).
ERRORS = {422: {"model": ErrorResponse, "description": "Invalid request"}}
api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)], responses=ERRORS)
api_router.include_router(studies.router)
api_router.include_router(trials.router)
api_router.include_router(workers.router)
api_router.include_router(artifacts.router)
api_router.include_router(charts.router)
health_router = health.router
