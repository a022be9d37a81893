"""Dashboard reads: charts of a study, its trials as a sortable table, and exports."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from hposvc.api.deps import CachesDep, DatabaseDep
from hposvc.domain.states import TrialState
from hposvc.schemas.common import MAX_ID, ErrorResponse, Page
from hposvc.schemas.trials import TrialRead
from hposvc.services import trial_table
from hposvc.services.charts import ChartCache, get_chart

router = APIRouter(prefix="/studies", tags=["charts"])
ERRORS = {404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}}


async def _charts(request: Request) -> ChartCache:
    return request.app.state.charts


ChartsDep = Annotated[ChartCache, Depends(_charts)]


@router.get(
    "/{study_name}/charts/{kind}",
    responses={
        200: {"content": {"application/json": {}}, "description": "Plotly figure JSON."},
        **ERRORS,
    },
    response_class=Response,
)
async def study_chart(
    study_name: str, kind: str, db: DatabaseDep, caches: CachesDep, charts: ChartsDep
) -> Response:
    """A chart of the study as Plotly figure JSON (409 when it does not apply yet)."""
    fig = await run_in_threadpool(
        get_chart, db=db, caches=caches, charts=charts, study_name=study_name, kind=kind
    )
    return Response(fig, media_type="application/json")


@router.get("/{study_name}/table", responses=ERRORS)
def trials_table(
    study_name: str,
    db: DatabaseDep,
    state: TrialState | None = None,
    sort: str = "number",
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> Page[TrialRead]:
    """A page of trials sorted by any column (params.NAME, values.I, duration, worker_id...)."""
    return trial_table.table_page(
        db=db,
        study_name=study_name,
        state=state,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{study_name}/export",
    responses={
        200: {"content": {"text/csv": {}, "application/json": {}}},
        **ERRORS,
        422: {"model": ErrorResponse},
    },
    response_class=Response,
)
def export_trials(
    study_name: str, db: DatabaseDep, format: Literal["csv", "json"] = "csv"
) -> Response:
    """Download every trial of the study as CSV or JSON."""
    body = trial_table.export_trials(db=db, study_name=study_name, fmt=format)
    media = "text/csv" if format == "csv" else "application/json"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{study_name}-trials.{format}"'},
    )
