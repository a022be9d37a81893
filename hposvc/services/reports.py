"""The report hot path: every epoch of every trial comes through here.

It makes the same decision as the general path in ``trials.report`` (same locks, same cache,
same rows written), with a few Core statements instead of the ORM's unit of work. Anything
out of the ordinary (a cache that must sync first, a trial that is not running or whose lease
ran out, another worker) goes to the general path, which knows every case.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam, insert, select, update

from hposvc.db.base import utcnow
from hposvc.db.models import IntermediateValue, Study, Trial
from hposvc.db.session import Database
from hposvc.domain.states import TrialState
from hposvc.samplers import StudyCaches
from hposvc.schemas.trials import ReportRequest, ReportResponse

# Built once: constructing statements costs more than running them on SQLite.
_studies, _trials, _values = Study.__table__, Trial.__table__, IntermediateValue.__table__
_LOCK_STUDY = select(_studies.c.seq).where(_studies.c.id == bindparam("b_study")).with_for_update()
_READ_TRIAL = select(
    _trials.c.study_id,
    _trials.c.worker_id,
    _trials.c.state,
    _trials.c.number,
    _trials.c.lease_expires_at,
    _trials.c.last_step,
).where(_trials.c.id == bindparam("b_trial"))
_INSERT_VALUE = insert(_values).values(
    trial_id=bindparam("b_trial"),
    step=bindparam("b_step"),
    value=bindparam("b_value"),
    should_prune=bindparam("b_prune"),
)
_UPDATE_VALUE = (
    update(_values)
    .where(_values.c.trial_id == bindparam("b_trial"), _values.c.step == bindparam("b_step"))
    .values(value=bindparam("b_value"), should_prune=bindparam("b_prune"))
)
_TRIAL_RUNS = {
    "last_step": bindparam("b_last_step"),
    "lease_expires_at": bindparam("b_lease"),
    "seq": bindparam("b_seq"),
    "system_attrs": bindparam("b_attrs"),
}
_UPDATE_TRIAL = update(_trials).where(_trials.c.id == bindparam("b_trial")).values(_TRIAL_RUNS)
_PRUNE_TRIAL = (
    update(_trials)
    .where(_trials.c.id == bindparam("b_trial"))
    .values(
        {
            **_TRIAL_RUNS,
            "state": TrialState.PRUNED.value,
            "values": bindparam("b_values"),
            "value": bindparam("b_value"),
            "pruned_step": bindparam("b_step"),
            "finished_at": bindparam("b_now"),
        }
    )
)
_BUMP_STUDY = (
    update(_studies)
    .where(_studies.c.id == bindparam("b_study"))
    .values(seq=bindparam("b_seq"), updated_at=bindparam("b_now"))
)


class _GeneralPath(Exception):
    """This report needs the general path."""


def fast_report(
    *, db: Database, caches: StudyCaches, study_id: int, trial_id: int, body: ReportRequest
) -> tuple[ReportResponse, bool] | None:
    """Answer an ordinary report, or None when the general path must take it.

    Returns:
        The answer, and whether the trial was pruned by it.
    """
    cache = caches.get(study_id)
    if cache is None:
        return None
    with caches.lock(study_id):
        if caches.get(study_id) is not cache:
            return None
        mutated = False
        try:
            with db.connection(write=True) as conn:
                seq = conn.execute(_LOCK_STUDY, {"b_study": study_id}).scalar()
                if seq is None or seq != cache.seq:
                    raise _GeneralPath
                row = conn.execute(_READ_TRIAL, {"b_trial": trial_id}).first()
                now = utcnow()
                if (
                    row is None
                    or row.study_id != study_id
                    or row.worker_id != body.worker_id
                    or row.state != TrialState.RUNNING.value
                    or row.lease_expires_at is None
                    or row.lease_expires_at < now
                ):
                    raise _GeneralPath
                previous = cache.intermediate_value(row.number, body.step)
                if previous == body.value:  # a retry: it did not prune, or the trial would be
                    return ReportResponse(should_prune=False), False
                mutated = True
                result = cache.report(row.number, body.step, body.value)
                new_seq = seq + 1
                params = {
                    "b_study": study_id,
                    "b_trial": trial_id,
                    "b_step": body.step,
                    "b_value": body.value,
                    "b_prune": result.should_prune,
                    "b_last_step": max(row.last_step or 0, body.step),
                    "b_lease": now + timedelta(seconds=cache.spec.budget.lease_seconds),
                    "b_seq": new_seq,
                    "b_attrs": result.system_attrs,
                    "b_now": now,
                }
                conn.execute(_INSERT_VALUE if previous is None else _UPDATE_VALUE, params)
                if result.should_prune:
                    cache.finish(row.number, TrialState.PRUNED, [body.value])
                    conn.execute(
                        _PRUNE_TRIAL, {**params, "b_lease": None, "b_values": [body.value]}
                    )
                else:
                    conn.execute(_UPDATE_TRIAL, params)
                conn.execute(_BUMP_STUDY, params)
            cache.seq = new_seq
            return ReportResponse(should_prune=result.should_prune), result.should_prune
        except _GeneralPath:
            return None
        except BaseException:
            if mutated:
                caches.drop(study_id)
            raise
