"""Dashboard charts of a study: Optuna's figures plus a timeline of trials per worker.

Figures are cached in memory per (study, version, kind): the version grows with every change
to a study's trials, so a cached figure is never stale, and a study that does not change is
drawn once. A snapshot of the Optuna cache's trials is taken under the study's lock (short);
the figure is drawn outside it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

import plotly.graph_objects as go
from sqlalchemy import select

from hposvc.db.models import Study, Trial, Worker, find_study_by_name
from hposvc.db.session import Database
from hposvc.domain.states import TrialState
from hposvc.errors import InvalidStateError, NotFoundError
from hposvc.samplers import StudyCaches
from hposvc.samplers.figures import OPTUNA_KINDS, NotApplicable, build_figure, snapshot
from hposvc.schemas.studies import StudySpec
from hposvc.services.decisions import decide

logger = logging.getLogger(__name__)

KINDS = (*OPTUNA_KINDS, "timeline")
STATE_COLORS = {
    TrialState.COMPLETE.value: "#2ca02c",
    TrialState.PRUNED.value: "#ff7f0e",
    TrialState.FAIL.value: "#d62728",
    TrialState.RUNNING.value: "#1f77b4",
}


class ChartCache:
    """Figures (JSON text) and trial snapshots, by study version; least recently used go."""

    def __init__(self, max_figures: int = 256, max_snapshots: int = 8) -> None:
        self._figures: OrderedDict[tuple[int, int, str], str] = OrderedDict()
        self._snapshots: OrderedDict[tuple[int, int], list[Any]] = OrderedDict()
        self._max_figures, self._max_snapshots = max_figures, max_snapshots
        self._lock = threading.Lock()
        # One lock per (study, kind) so concurrent requests draw a figure once.
        self._drawing: dict[tuple[int, str], threading.Lock] = {}

    def figure(self, key: tuple[int, int, str]) -> str | None:
        with self._lock:
            fig = self._figures.get(key)
            if fig is not None:
                self._figures.move_to_end(key)
            return fig

    def put_figure(self, key: tuple[int, int, str], fig: str) -> None:
        with self._lock:
            self._figures[key] = fig
            while len(self._figures) > self._max_figures:
                self._figures.popitem(last=False)

    def snapshot(self, key: tuple[int, int]) -> list[Any] | None:
        with self._lock:
            return self._snapshots.get(key)

    def put_snapshot(self, key: tuple[int, int], trials: list[Any]) -> None:
        with self._lock:
            self._snapshots[key] = trials
            while len(self._snapshots) > self._max_snapshots:
                self._snapshots.popitem(last=False)

    def drawing(self, study_id: int, kind: str) -> threading.Lock:
        with self._lock:
            return self._drawing.setdefault((study_id, kind), threading.Lock())


def _study_row(db: Database, name: str) -> tuple[int, int, StudySpec]:
    with db.session() as session:
        study = find_study_by_name(session, name)
        return study.id, study.seq, StudySpec.model_validate(study.spec)


def _trials_snapshot(
    db: Database, caches: StudyCaches, charts: ChartCache, study_id: int
) -> tuple[int, list[Any]]:
    with decide(db=db, caches=caches, study_id=study_id) as d:
        version = d.study.seq
        cached = charts.snapshot((study_id, version))
        if cached is not None:
            return version, cached
        trials = snapshot(d.cache)
    charts.put_snapshot((study_id, version), trials)
    return version, trials


def _stopped(db: Database, study_id: int, numbers: list[int]) -> dict[int, str]:
    """Why each complete trial stopped, from the attributes its worker wrote."""
    out: dict[int, str] = {}
    with db.session() as session:
        for start in range(0, len(numbers), 1000):
            rows = session.execute(
                select(Trial.number, Trial.user_attrs).where(
                    Trial.study_id == study_id,
                    Trial.state == TrialState.COMPLETE.value,
                    Trial.number.in_(numbers[start : start + 1000]),
                )
            )
            for number, attrs in rows:
                if isinstance(attrs, dict) and isinstance(attrs.get("stopped"), str):
                    out[number] = attrs["stopped"]
    return out


def get_chart(
    *, db: Database, caches: StudyCaches, charts: ChartCache, study_name: str, kind: str
) -> str:
    """A chart of a study as Plotly figure JSON text.

    Raises:
        NotFoundError: unknown study or chart kind.
        InvalidStateError: the chart does not exist for this study yet (or at all).
    """
    if kind not in KINDS:
        raise NotFoundError(f"chart {kind!r} not found: one of {', '.join(KINDS)}")
    study_id, version, spec = _study_row(db, study_name)
    cached = charts.figure((study_id, version, kind))
    if cached is not None:
        return cached
    with charts.drawing(study_id, kind):
        if kind == "timeline":
            version, fig = _timeline(db, study_id)
        else:
            version, trials = _trials_snapshot(db, caches, charts, study_id)
            cached = charts.figure((study_id, version, kind))
            if cached is not None:
                return cached
            numbers = [t.number for t in trials] if kind == "intermediate" else []
            stopped = _stopped(db, study_id, numbers)
            try:
                fig = build_figure(
                    kind,
                    trials,
                    directions=spec.directions,
                    objective_names=[o.name for o in spec.objectives],
                    stopped=stopped,
                )
            except NotApplicable as exc:
                raise InvalidStateError(f"{kind}: {exc}", code="chart_not_applicable") from exc
        charts.put_figure((study_id, version, kind), fig)
        logger.debug("study %d: drew %s at version %d", study_id, kind, version)
        return fig


def _timeline(db: Database, study_id: int) -> tuple[int, str]:
    """Trials as bars per worker over time, colored by state; gaps are idle time."""
    with db.session() as session:
        version = session.scalar(select(Study.seq).where(Study.id == study_id)) or 0
        names = {w.id: f"{w.name}@{w.host}" for w in session.scalars(select(Worker))}
        rows = list(
            session.execute(
                select(
                    Trial.number, Trial.state, Trial.worker_id, Trial.started_at, Trial.finished_at
                )
                .where(Trial.study_id == study_id, Trial.started_at.is_not(None))
                .order_by(Trial.number)
            )
        )
    if not rows:
        raise InvalidStateError("timeline: no trial has started yet", code="chart_not_applicable")
    now = max((r.finished_at or r.started_at) for r in rows)
    fig = go.Figure()
    for state, color in STATE_COLORS.items():
        mine = [r for r in rows if r.state == state]
        if not mine:
            continue
        ends = [r.finished_at or now for r in mine]
        fig.add_trace(
            go.Bar(
                name=state,
                orientation="h",
                y=[names.get(r.worker_id, "no worker") for r in mine],
                base=[r.started_at.isoformat() for r in mine],
                x=[
                    max((e - r.started_at).total_seconds() * 1000, 1)
                    for r, e in zip(mine, ends, strict=True)
                ],
                marker_color=color,
                text=[f"#{r.number}" for r in mine],
                hovertemplate="trial %{text}<br>%{base} + %{x:.0f} ms<extra>" + state + "</extra>",
            )
        )
    fig.update_layout(
        title={"text": "Timeline of trials per worker"},
        barmode="overlay",
        xaxis={"type": "date", "title": {"text": "time"}},
        yaxis={"title": {"text": "worker"}, "type": "category"},
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h"},
    )
    return version, str(fig.to_json())
