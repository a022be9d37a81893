"""A study's trials as a table: a page sorted by any column, and the whole table exported.

Every sort runs in the database, which reads a parameter or a value out of each trial's JSON
and hands back the page's rows only: no study's trials are loaded to sort them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB

from hposvc.db.models import Trial, find_study_by_name
from hposvc.db.session import Database
from hposvc.domain.states import TrialState
from hposvc.errors import InvalidRequestError
from hposvc.schemas.common import Page
from hposvc.schemas.search_space import PARAM_NAME
from hposvc.schemas.studies import StudySpec
from hposvc.schemas.trials import TrialRead
from hposvc.services.trials import SORTABLE, list_trials, trial_page, trial_read

COLUMN_SORTS = {"worker_id", "attempt", "last_step"}  # columns without an index of their own


def _sort_key(sort: str, is_sqlite: bool) -> Any:
    """The SQL expression a table sort orders by; NULL where a trial has no such value.

    Parameters and values are read out of their JSON in the database: SQLite's
    ``json_extract`` gives numbers and text (numbers sort first), PostgreSQL's ``jsonb`` keeps
    JSON's kinds (text, then numbers, then booleans). A JSON null counts as missing.
    """
    if sort == "duration":
        if is_sqlite:  # timestamps are text there
            return func.julianday(Trial.finished_at) - func.julianday(Trial.started_at)
        return Trial.finished_at - Trial.started_at
    if sort in COLUMN_SORTS:
        return getattr(Trial, sort)
    column, key = (
        (Trial.params, sort[7:]) if sort.startswith("params.") else (Trial.values, int(sort[7:]))
    )
    if is_sqlite:
        path = f'$."{key}"' if isinstance(key, str) else f"$[{key}]"
        return func.json_extract(column, path)
    return func.nullif(cast(column, JSONB)[key], literal_column("'null'::jsonb"))


def table_page(
    *,
    db: Database,
    study_name: str,
    state: TrialState | None = None,
    sort: str = "number",
    descending: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> Page[TrialRead]:
    """One page of a study's trials sorted by any column (``params.NAME``, ``values.I`` too).

    Trials without a value in the column come last; ties go by number, in the order of the
    sort.

    Raises:
        NotFoundError: unknown study.
        InvalidRequestError: unknown sort column.
    """
    if sort in SORTABLE:
        return list_trials(
            db=db,
            study_name=study_name,
            state=state,
            sort=sort,
            descending=descending,
            limit=limit,
            offset=offset,
        )
    valid = sort in COLUMN_SORTS or sort == "duration"
    valid = valid or (sort.startswith("params.") and re.match(PARAM_NAME, sort[7:]) is not None)
    valid = valid or (sort.startswith("values.") and sort[7:].isdigit())
    if not valid:
        raise InvalidRequestError(
            f"sort: must be one of {sorted(SORTABLE | COLUMN_SORTS | {'duration'})}, "
            "params.NAME (a parameter's name) or values.I"
        )
    key = _sort_key(sort, db.is_sqlite)
    order = (key.desc() if descending else key.asc()).nulls_last()
    number = Trial.number.desc() if descending else Trial.number.asc()
    with db.session() as session:
        study = find_study_by_name(session, study_name)
        n_objectives = len(study.spec.get("objectives") or [])
        if sort.startswith("values.") and int(sort[7:]) >= n_objectives:
            raise InvalidRequestError(
                f"sort: values.I takes an objective's index, below {n_objectives} here"
            )
        return trial_page(session, study, state, [order, number], limit, offset)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def export_trials(*, db: Database, study_name: str, fmt: str) -> str:
    """Every trial of a study as CSV (one row per trial, flat columns) or a JSON array.

    Raises:
        NotFoundError: unknown study.
        InvalidRequestError: a format other than csv or json.
    """
    return "".join(_export_chunks(db, study_name, fmt))


def _export_chunks(db: Database, study_name: str, fmt: str) -> Iterator[str]:
    if fmt not in ("csv", "json"):
        raise InvalidRequestError("format: must be csv or json")
    with db.session() as session:
        study = find_study_by_name(session, study_name)
        spec = StudySpec.model_validate(study.spec)
        total = session.scalar(select(func.count()).where(Trial.study_id == study.id)) or 0
        rows = session.scalars(
            select(Trial).where(Trial.study_id == study.id).order_by(Trial.number)
        )
        reads = [trial_read(t, study.name) for t in rows]
    if fmt == "json":
        yield "["
        for i, t in enumerate(reads):
            yield ("," if i else "") + t.model_dump_json()
        yield "]"
        return
    params = list(spec.search_space.root)
    metrics = sorted(
        {k for t in reads for k in (t.user_attrs.get("metrics") or {}) if isinstance(k, str)}
    )
    header = [
        "number",
        "id",
        "state",
        *[o.name for o in spec.objectives],
        *[f"params_{p}" for p in params],
        *[f"metric_{m}" for m in metrics],
        "stopped",
        "pruned_step",
        "last_step",
        "worker_id",
        "attempt",
        "retry_of",
        "created_at",
        "started_at",
        "finished_at",
        "fail_reason",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for i, t in enumerate(reads):
        values = t.values or []
        metric_values = t.user_attrs.get("metrics") or {}
        writer.writerow(
            [
                t.number,
                t.id,
                t.state.value,
                *[values[k] if k < len(values) else "" for k in range(len(spec.objectives))],
                *[_cell(t.params.get(p, "")) for p in params],
                *[_cell(metric_values.get(m, "")) for m in metrics],
                t.user_attrs.get("stopped", ""),
                t.pruned_step,
                t.last_step,
                t.worker_id,
                t.attempt,
                t.retry_of,
                _cell(t.created_at),
                _cell(t.started_at),
                _cell(t.finished_at),
                t.fail_reason or "",
            ]
        )
        if i % 500 == 499 or i == total - 1 or i == len(reads) - 1:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if not reads:
        yield buffer.getvalue()
