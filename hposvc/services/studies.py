"""Studies: create from a spec, read, list, steer (pause/resume/stop), delete, enqueue."""

from __future__ import annotations

import logging

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hposvc.db.base import utcnow
from hposvc.db.models import Study, Trial, find_study_by_name
from hposvc.db.session import Database
from hposvc.domain.states import STUDY_TRANSITIONS, StudyState, TrialState
from hposvc.errors import AlreadyExistsError, InvalidRequestError, InvalidStateError
from hposvc.samplers import StudyCaches, validate_spec
from hposvc.samplers.pareto import pareto_front
from hposvc.schemas.common import Page
from hposvc.schemas.search_space import contains, is_active
from hposvc.schemas.studies import EnqueueRequest, StudyRead, StudySpec, StudySummary
from hposvc.schemas.trials import TrialRead
from hposvc.services.artifacts import ArtifactStore
from hposvc.services.decisions import decide
from hposvc.services.trials import trial_read

logger = logging.getLogger(__name__)


def study_read(study: Study) -> StudyRead:
    return StudyRead(
        id=study.id,
        name=study.name,
        state=StudyState(study.state),
        spec=StudySpec.model_validate(study.spec),
        created_at=study.created_at,
        updated_at=study.updated_at,
        completed_at=study.completed_at,
        n_trials=study.n_trials,
        budget_used=study.budget_used,
        version=study.seq,
    )


def create_study(
    *, db: Database, spec: StudySpec, store: ArtifactStore | None = None
) -> StudyRead:
    """Validate a spec against the samplers and pruners, then store it.

    Artifacts a deleted study of the same id left behind (a database recreated beside an
    old artifacts folder) are removed, so no trial ever reads another's checkpoint.

    Raises:
        InvalidRequestError: the sampler or pruner refuses the spec (names the field).
        AlreadyExistsError: the name is taken.
    """
    validate_spec(spec)
    with db.session(write=True) as session:
        now = utcnow()
        study = Study(
            name=spec.name,
            state=StudyState.RUNNING.value,
            spec=spec.model_dump(mode="json"),
            system_attrs={},
            seq=0,
            n_trials=0,
            budget_used=0,
            created_at=now,
            updated_at=now,
        )
        session.add(study)
        try:
            session.flush()
        except IntegrityError as exc:
            raise AlreadyExistsError(
                f"a study named {spec.name!r} already exists", code="study_exists"
            ) from exc
        logger.info("study %d %r created (%s sampler)", study.id, study.name, spec.sampler.name)
        if store is not None:
            store.remove_study(study.id)
        return study_read(study)


def _counts(session: Session, study_id: int) -> dict[TrialState, int]:
    rows = session.execute(
        select(Trial.state, func.count()).where(Trial.study_id == study_id).group_by(Trial.state)
    )
    counts = dict.fromkeys(TrialState, 0)
    for state, n in rows:
        counts[TrialState(state)] = n
    return counts


def _best(
    session: Session, study: Study, spec: StudySpec
) -> tuple[TrialRead | None, list[TrialRead] | None]:
    done = [Trial.study_id == study.id, Trial.state == TrialState.COMPLETE.value]
    if len(spec.objectives) == 1:
        order = Trial.value.desc() if spec.directions[0] == "maximize" else Trial.value.asc()
        best = session.scalars(
            select(Trial).where(*done).order_by(order, Trial.number).limit(1)
        ).first()
        return (trial_read(best, study.name) if best else None), None
    rows = list(
        session.execute(select(Trial.id, Trial.values).where(*done).order_by(Trial.number))
    )
    front = pareto_front([list(v) for _, v in rows], spec.directions)
    ids = [rows[i][0] for i in front]
    trials = (
        session.scalars(select(Trial).where(Trial.id.in_(ids)).order_by(Trial.number))
        if ids
        else []
    )
    return None, [trial_read(t, study.name) for t in trials]


def get_study(*, db: Database, name: str) -> StudySummary:
    """Raises: NotFoundError."""
    with db.session() as session:
        study = find_study_by_name(session, name)
        spec = StudySpec.model_validate(study.spec)
        best, front = _best(session, study, spec)
        return StudySummary(
            **study_read(study).model_dump(),
            counts=_counts(session, study.id),
            best_trial=best,
            pareto_front=front,
        )


def list_studies(
    *, db: Database, state: StudyState | None = None, limit: int = 50, offset: int = 0
) -> Page[StudyRead]:
    with db.session() as session:
        where = [] if state is None else [Study.state == state.value]
        total = session.scalar(select(func.count()).select_from(Study).where(*where)) or 0
        rows = session.scalars(
            select(Study).where(*where).order_by(Study.id.desc()).limit(limit).offset(offset)
        )
        return Page[StudyRead](
            items=[study_read(s) for s in rows], total=total, limit=limit, offset=offset
        )


def _study_id(db: Database, name: str) -> int:
    with db.session() as session:
        return find_study_by_name(session, name).id


def act_on_study(*, db: Database, caches: StudyCaches, name: str, action: str) -> StudyRead:
    """Pause, resume or stop. Running trials of a paused or stopped study may still finish.

    Raises:
        NotFoundError: unknown study.
        InvalidStateError: the action is not allowed from the study's state.
    """
    with decide(db=db, caches=caches, study_id=_study_id(db, name)) as d:
        current = StudyState(d.study.state)
        target = STUDY_TRANSITIONS[action].get(current)
        if target is None:
            raise InvalidStateError(f"cannot {action} study {name!r}: it is {current}")
        d.set_state(target)
        if target is StudyState.RUNNING:
            d.complete_if_done()
        logger.info("study %d %r: %s -> %s", d.study.id, name, current, target)
        return study_read(d.study)


def delete_study(
    *, db: Database, caches: StudyCaches, name: str, store: ArtifactStore | None = None
) -> None:
    """Delete a study and everything it holds.

    Raises:
        NotFoundError: unknown study.
    """
    study_id = _study_id(db, name)
    with caches.lock(study_id):
        with db.session(write=True) as session:
            find_study_by_name(session, name, for_update=True)
            # Break the retry_of self-references first: not every backend orders cascades.
            session.execute(
                Trial.__table__.update().where(Trial.study_id == study_id).values(retry_of=None)
            )
            session.execute(delete(Study).where(Study.id == study_id))
        caches.drop(study_id)
    if store is not None:
        store.remove_study(study_id)


def enqueue_trial(
    *, db: Database, caches: StudyCaches, name: str, body: EnqueueRequest
) -> TrialRead:
    """Queue a trial with fixed parameters (the rest are sampled); claims take it first.

    Raises:
        NotFoundError: unknown study.
        InvalidRequestError: a parameter is unknown or outside its range.
        InvalidStateError: the study is completed or stopped.
    """
    with decide(db=db, caches=caches, study_id=_study_id(db, name)) as d:
        space = d.spec.search_space.root
        for key, value in body.params.items():
            if key not in space:
                raise InvalidRequestError(f"params.{key}: not in the search space")
            if not contains(space[key], value):
                raise InvalidRequestError(f"params.{key}: {value!r} is outside its range")
        if d.spec.sampler.name == "grid":
            missing = [
                name
                for name, param in d.spec.search_space.ordered()
                if is_active(param, body.params) and name not in body.params
            ]
            if missing:
                raise InvalidRequestError(
                    f"params: a grid study needs every active parameter; missing {missing}"
                )
        if d.study.state in (StudyState.COMPLETED.value, StudyState.STOPPED.value):
            raise InvalidStateError(f"study {name!r} is {d.study.state}")
        trial = Trial(
            study_id=d.study.id,
            state=TrialState.WAITING.value,
            fixed_params=dict(body.params),
            user_attrs=dict(body.user_attrs),
            attempt=1,
            counts_budget=True,
            created_at=d.now,
        )
        d.add_waiting(trial)
        d.study.budget_used += 1
        d.session.flush()
        return trial_read(trial, name)
