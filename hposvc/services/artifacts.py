"""Trial artifacts (checkpoints, final models) in a size-limited filesystem store.

The database says who may write (the worker holding the trial); the files live under
``artifacts_dir/<study id>/<trial id>/<kind>``, written to a temporary file, flushed to disk and
renamed, so a reader never sees half a checkpoint and a power failure loses no answered upload.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import bindparam, select
from starlette.concurrency import run_in_threadpool

from hposvc.db.models import Study, Trial, find_study_by_name, find_trial_by_id
from hposvc.db.session import Database
from hposvc.domain.states import TrialState
from hposvc.errors import (
    InvalidRequestError,
    LeaseLostError,
    NotFoundError,
    PayloadTooLargeError,
)
from hposvc.schemas.studies import StudySpec
from hposvc.schemas.trials import ArtifactRead

KINDS = ("checkpoint", "model")
_WRITABLE = {
    "checkpoint": {TrialState.RUNNING},
    "model": {TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED},
}


class ArtifactStore:
    def __init__(self, root: str | os.PathLike[str], max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path(self, study_id: int, trial_id: int, kind: str) -> Path:
        return self.root / str(study_id) / str(trial_id) / kind

    def remove_study(self, study_id: int) -> None:
        shutil.rmtree(self.root / str(study_id), ignore_errors=True)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidRequestError(f"kind: must be one of {list(KINDS)}")


# Only the columns the check needs: loading the whole trial decodes its JSON columns, which
# was most of an upload's time in the server.
_HOLDER = select(Trial.study_id, Trial.worker_id, Trial.state).where(
    Trial.id == bindparam("trial_id")
)


def writable_trial(*, db: Database, trial_id: int, worker_id: int, kind: str) -> tuple[int, int]:
    """The (study id, trial id) a worker may write ``kind`` for.

    Raises:
        NotFoundError, LeaseLostError, InvalidRequestError.
    """
    _check_kind(kind)
    rows = db.read_once(_HOLDER, {"trial_id": trial_id})
    if not rows:
        raise NotFoundError(f"trial {trial_id} not found", code="trial_not_found")
    study_id, holder, state = rows[0]
    if holder != worker_id or TrialState(state) not in _WRITABLE[kind]:
        raise LeaseLostError(f"trial {trial_id} is not held by worker {worker_id}")
    return study_id, trial_id


async def save(
    store: ArtifactStore, study_id: int, trial_id: int, kind: str, chunks: AsyncIterator[bytes]
) -> ArtifactRead:
    """Stream a body into the store.

    Raises:
        PayloadTooLargeError: over the store's size limit (nothing is kept).
    """
    target = store.path(study_id, trial_id, kind)
    new_dirs = [d for d in (target.parent, target.parent.parent) if not d.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{kind}.")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > store.max_bytes:
                    raise PayloadTooLargeError(
                        f"{kind} is larger than the {store.max_bytes}-byte limit"
                    )
                out.write(chunk)
            out.flush()
            await run_in_threadpool(_durably_replace, out.fileno(), Path(tmp), target, new_dirs)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ArtifactRead(trial_id=trial_id, kind=kind, size=size)


def _durably_replace(fd: int, tmp: Path, target: Path, new_dirs: list[Path]) -> None:
    """Put the written file in place so that it survives a power failure once this returns.

    Its bytes reach the disk before its name does, so a crash never leaves a half-written file
    where the previous checkpoint was; then the name, and those of directories made for it.
    A trial completes after its model upload was answered, so a completed trial's model is on
    disk whenever the database says the trial is complete.
    """
    os.fsync(fd)
    os.replace(tmp, target)
    for directory in [target.parent, *(d.parent for d in new_dirs)]:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def find(*, db: Database, store: ArtifactStore, trial_id: int, kind: str) -> Path:
    """The artifact of a trial; a retry's checkpoint falls back to its earlier attempts'.

    Raises:
        NotFoundError: no such trial or artifact.
    """
    _check_kind(kind)
    with db.session() as session:
        trial: Trial | None = find_trial_by_id(session, trial_id)
        while trial is not None:
            path = store.path(trial.study_id, trial.id, kind)
            if path.exists():
                return path
            if kind != "checkpoint" or trial.retry_of is None:
                break
            trial = session.get(Trial, trial.retry_of)
    raise NotFoundError(f"trial {trial_id} has no {kind}", code="artifact_not_found")


def best_model(*, db: Database, store: ArtifactStore, study_name: str) -> tuple[int, Path]:
    """The final model of the study's best trial (single objective).

    Raises:
        NotFoundError: no completed trial with a model.
    """
    with db.session() as session:
        study: Study = find_study_by_name(session, study_name)
        spec = StudySpec.model_validate(study.spec)
        if len(spec.objectives) != 1:
            raise InvalidRequestError("best model: the study has several objectives")
        order = Trial.value.desc() if spec.directions[0] == "maximize" else Trial.value.asc()
        rows = session.scalars(
            select(Trial.id)
            .where(Trial.study_id == study.id, Trial.state == TrialState.COMPLETE.value)
            .order_by(order, Trial.number)
            .limit(20)
        )
        for trial_id in rows:
            path = store.path(study.id, trial_id, "model")
            if path.exists():
                return trial_id, path
    raise NotFoundError(f"study {study_name!r} has no completed trial with a model")
