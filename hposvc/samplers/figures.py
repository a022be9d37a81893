"""Dashboard figures drawn by Optuna's visualization and importance modules.

The services hand over a snapshot of a study cache's trials (``snapshot``, taken while the
study's lock is held) and get back Plotly figure JSON. Nothing here is re-derived by hand:
the figures are Optuna's, only restyled (pruned and early-stopped curves are marked) and,
for large studies, drawn from a sample of the trials (``downsample``) where every trial
would make the plot unreadable anyway.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna import visualization as vis
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

from hposvc.samplers.adopting_storage import AdoptingStorage
from hposvc.samplers.cache import StudyCache

logger = logging.getLogger(__name__)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

OPTUNA_KINDS = (
    "history",
    "intermediate",
    "parallel",
    "importance",
    "slice",
    "contour",
    "pareto",
)
# Trials drawn per kind at most; the rest are sampled out (best trials are always kept).
LIMITS = {
    "history": None,
    "intermediate": 300,
    "parallel": 1500,
    "importance": 1500,
    "slice": 2000,
    "contour": 1500,
    "pareto": 5000,
}
BEST_KEPT = 50


class NotApplicable(Exception):
    """The figure does not exist for this study (e.g. a Pareto front of one objective)."""


def snapshot(cache: StudyCache) -> list[FrozenTrial]:
    """The cache's trials as they are now; call it while holding the study's lock.

    ``InMemoryStorage`` copies a trial before changing it, so the list stays as it was.
    """
    return list(cache.study.get_trials(deepcopy=False))


def downsample(
    trials: Sequence[FrozenTrial], limit: int | None, directions: list[str]
) -> list[FrozenTrial]:
    """At most ``limit`` trials: the best, the running, and an even spread of the rest."""
    if limit is None or len(trials) <= limit:
        return list(trials)
    done = [t for t in trials if t.state == OptunaState.COMPLETE and t.values]
    sign = -1.0 if directions[0] == "maximize" else 1.0
    best = sorted(done, key=lambda t: sign * t.values[0])[:BEST_KEPT]
    keep = {t.number for t in best}
    keep.update(t.number for t in trials if t.state == OptunaState.RUNNING)
    rest = [t for t in trials if t.number not in keep]
    room = max(limit - len(keep), 0)
    if room and rest:
        stride = len(rest) / room
        keep.update(rest[int(i * stride)].number for i in range(min(room, len(rest))))
    return [t for t in trials if t.number in keep]


class _FigureStorage(AdoptingStorage):
    """A chart's own copies of the trials, read without copying them again.

    Optuna's plots read trials with ``deepcopy=True``, which at 10,000 trials costs more than
    drawing; here the trials are copies made for this one figure.
    """

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,  # noqa: ARG002 - the trials are copies already
        states: Container[OptunaState] | None = None,
    ) -> list[FrozenTrial]:
        return super().get_all_trials(study_id, deepcopy=False, states=states)


def _own_copy(trial: FrozenTrial) -> FrozenTrial:
    """A copy of ``trial`` whose containers are its own (their items are immutable)."""
    return FrozenTrial(
        number=trial.number,
        state=trial.state,
        value=None,
        values=trial.values,  # copied into a list of its own
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params=dict(trial.params),
        distributions=dict(trial.distributions),
        user_attrs=dict(trial.user_attrs),
        system_attrs=dict(trial.system_attrs),
        intermediate_values=dict(trial.intermediate_values),
        trial_id=trial._trial_id,
    )


def _study(trials: Sequence[FrozenTrial], directions: list[str]) -> optuna.Study:
    """A study of copies of ``trials`` that keep their numbers (a sample's too)."""
    storage = _FigureStorage()
    study = optuna.create_study(storage=storage, directions=directions)
    for trial in trials:
        storage.adopt_trial(study._study_id, _own_copy(trial))
    return study


def _mark_curves(fig: Any, trials: Sequence[FrozenTrial], stopped: dict[int, str]) -> None:
    """Dash pruned curves and end early-stopped ones with a cross; legend says which."""
    states = {t.number: t.state for t in trials}
    for trace in fig.data:
        name = str(trace.name or "")
        if not name.startswith("Trial"):
            continue
        number = int(name[5:])
        if states.get(number) == OptunaState.PRUNED:
            trace.update(line={"dash": "dot", "color": "#d62728"}, name=f"{name} (pruned)")
        elif stopped.get(number) == "early_stopped":
            trace.update(
                line={"dash": "dash"},
                marker={"symbol": "x", "size": 9},
                name=f"{name} (early-stopped)",
            )
        elif states.get(number) == OptunaState.RUNNING:
            trace.update(line={"width": 3}, name=f"{name} (running)")


def _top_params(study: optuna.Study, n: int) -> list[str] | None:
    names = sorted({p for t in study.trials for p in t.params})
    if len(names) <= n:
        return None
    try:
        ranked = list(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError):  # too few trials for the evaluator
        return names[:n]
    return ranked[:n]


def build_figure(
    kind: str,
    trials: Sequence[FrozenTrial],
    *,
    directions: list[str],
    objective_names: list[str],
    stopped: dict[int, str] | None = None,
) -> str:
    """Optuna's figure of ``kind`` over ``trials``, as Plotly figure JSON text.

    Args:
        kind: one of ``OPTUNA_KINDS``.
        trials: a snapshot of the study's trials.
        directions: the objectives' directions.
        objective_names: the objectives' names (axis titles).
        stopped: per trial number, why a complete trial stopped (``early_stopped``...).

    Raises:
        NotApplicable: the figure does not exist for this study (yet).
        ValueError: an unknown kind.
    """
    if kind not in OPTUNA_KINDS:
        raise ValueError(f"unknown chart {kind!r}")
    multi = len(directions) > 1
    if kind == "pareto" and not multi:
        raise NotApplicable("a Pareto front needs several objectives")
    if kind == "intermediate" and multi:
        raise NotApplicable("intermediate values are reported by single-objective studies")
    sample = downsample(trials, LIMITS[kind], directions)
    complete = [t for t in sample if t.state == OptunaState.COMPLETE]
    if kind in ("importance", "contour") and len(complete) < 2:
        raise NotApplicable("needs at least two complete trials")
    if not complete and kind != "intermediate":
        raise NotApplicable("no complete trial yet")
    study = _study(sample, directions)
    target = (lambda t: t.values[0]) if multi else None
    name = objective_names[0]
    if kind == "history":
        fig = vis.plot_optimization_history(study, target=target, target_name=name)
    elif kind == "intermediate":
        if not any(t.intermediate_values for t in sample):
            raise NotApplicable("no intermediate value reported yet")
        fig = vis.plot_intermediate_values(study)
        _mark_curves(fig, sample, stopped or {})
    elif kind == "parallel":
        fig = vis.plot_parallel_coordinate(study, target=target, target_name=name)
    elif kind == "importance":
        fig = vis.plot_param_importances(study, target=target, target_name=name)
    elif kind == "slice":
        fig = vis.plot_slice(study, target=target, target_name=name)
    elif kind == "contour":
        fig = vis.plot_contour(
            study, params=_top_params(study, 3), target=target, target_name=name
        )
    else:
        fig = vis.plot_pareto_front(study, target_names=objective_names)
    shown = len(sample)
    if shown < len(trials):
        fig.add_annotation(
            text=f"{shown} of {len(trials)} trials shown (best and a sample)",
            xref="paper",
            yref="paper",
            x=1,
            y=1.08,
            showarrow=False,
            font={"size": 11, "color": "#666"},
        )
    fig.update_layout(margin={"l": 50, "r": 20, "t": 50, "b": 40}, autosize=True, width=None)
    return str(fig.to_json())
