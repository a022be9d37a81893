"""A study's trials as a table: a page sorted by any column, and the whole table exported.

Columns the database indexes (number, value, state, times) are sorted by SQL; the others
(a parameter, a metric, the duration, the worker...) are sorted in Python over light rows,
which stays fast for tens of thousands of trials.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from hposvc.db.models import Trial, find_study_by_name
from hposvc.db.session import Database
from hposvc.domain.states import TrialState
from hposvc.errors import InvalidRequestError
from hposvc.schemas.common import Page
from hposvc.schemas.studies import StudySpec
from hposvc.schemas.trials import TrialRead
from hposvc.services.trials import SORTABLE, list_trials, study_trial_reads, trial_read

PYTHON_SORTS = {"duration", "worker_id", "attempt", "last_step"}


def _sort_key(sort: str, row: Any) -> Any:
    """A key that puts missing values last whatever the order (the flag comes first)."""
    if sort == "duration":
        value = (
            (row.finished_at - row.started_at).total_seconds()
            if row.finished_at and row.started_at
            else None
        )
    elif sort.startswith("params."):
        value = (row.params or {}).get(sort[7:])
    elif sort.startswith("values."):
        index = int(sort[7:])
        value = row.values[index] if row.values and len(row.values) > index else None
    else:
        value = getattr(row, sort)
    if isinstance(value, bool) or not isinstance(value, int | float):
        value = None if value is None else str(value)
    return value


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
    valid = sort in PYTHON_SORTS or sort.startswith("params.")
    valid = valid or (sort.startswith("values.") and sort[7:].isdigit())
    if not valid:
        raise InvalidRequestError(
            f"sort: must be one of {sorted(SORTABLE | PYTHON_SORTS)}, params.NAME or values.I"
        )
    with db.session() as session:
        study = find_study_by_name(session, study_name)
        where = [Trial.study_id == study.id]
        if state is not None:
            where.append(Trial.state == state.value)
        columns = [Trial.number]  # and the sort's own: no timestamps to parse for the others
        if sort == "duration":
            columns += [Trial.started_at, Trial.finished_at]
        elif sort.startswith("params."):
            columns.append(Trial.params)
        elif sort.startswith("values."):
            columns.append(Trial.values)
        else:
            columns.append(getattr(Trial, sort))
        rows = list(session.execute(select(*columns).where(*where)))
        keyed = [(_sort_key(sort, r), r.number) for r in rows]  # once per row: 10,000 rows
        known = [k for k in keyed if k[0] is not None]
        missing = sorted(number for key, number in keyed if key is None)
        try:
            known.sort(reverse=descending)
        except TypeError:  # mixed kinds (a categorical of numbers and strings): compare as text
            known.sort(key=lambda k: (str(k[0]), k[1]), reverse=descending)
        ordered = [number for _, number in known] + missing
        numbers = ordered[offset : offset + limit]
        reads = {t.number: t for t in study_trial_reads(session, study, numbers)}
        return Page[TrialRead](
            items=[reads[n] for n in numbers if n in reads],
            total=len(rows),
            limit=limit,
            offset=offset,
        )


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
