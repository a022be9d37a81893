"""Workers: registration, heartbeats (which keep their leases alive), listing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hposvc.db.base import utcnow
from hposvc.db.models import Study, Trial, Worker, find_worker_by_id
from hposvc.db.session import Database
from hposvc.domain.states import TrialState
from hposvc.schemas.workers import HeartbeatResponse, WorkerRead, WorkerRegister

OFFLINE_AFTER_SECONDS = 60.0


def register(*, db: Database, body: WorkerRegister) -> int:
    """Register a worker; registering the same name and host again returns the same id.

    One statement inserts the worker or updates the one registered under that name and host,
    so two registrations of a new worker at the same moment (a daemon's slots starting
    together, a retried request) get the same id instead of one failing on the unique key.
    """
    dialect_insert = sqlite_insert if db.is_sqlite else postgresql_insert
    now = utcnow()
    changes = {"slots": body.slots, "devices": list(body.devices), "last_heartbeat_at": now}
    statement = (
        dialect_insert(Worker)
        .values(name=body.name, host=body.host, registered_at=now, **changes)
        .on_conflict_do_update(index_elements=[Worker.name, Worker.host], set_=changes)
        .returning(Worker.id)
    )
    with db.session(write=True) as session:
        return session.execute(statement).scalar_one()


def heartbeat(*, db: Database, worker_id: int) -> HeartbeatResponse:
    """Note the worker is alive and extend the lease of each trial it runs.

    A lease that already ran out is not revived: that trial is failed (and maybe re-issued).

    Raises:
        NotFoundError: unknown worker.
    """
    with db.session(write=True) as session:
        worker = find_worker_by_id(session, worker_id)
        now = utcnow()
        worker.last_heartbeat_at = now
        study_ids = select(Trial.study_id).where(
            Trial.worker_id == worker_id, Trial.state == TrialState.RUNNING.value
        )
        rows = session.execute(select(Study.id, Study.spec).where(Study.id.in_(study_ids))).all()
        extended, latest = 0, None
        for study_id, spec in rows:
            lease = float(spec["budget"]["lease_seconds"])
            expires = now + timedelta(seconds=lease)
            result = session.execute(
                update(Trial)
                .where(
                    Trial.study_id == study_id,
                    Trial.worker_id == worker_id,
                    Trial.state == TrialState.RUNNING.value,
                    Trial.lease_expires_at >= now,
                )
                .values(lease_expires_at=expires)
            )
            extended += result.rowcount or 0
            latest = expires if latest is None else max(latest, expires)
        return HeartbeatResponse(id=worker_id, leases_extended=extended, lease_expires_at=latest)


def list_workers(*, db: Database) -> list[WorkerRead]:
    with db.session() as session:
        running: dict[int, list[int]] = {}
        for worker_id, trial_id in session.execute(
            select(Trial.worker_id, Trial.id).where(Trial.state == TrialState.RUNNING.value)
        ):
            running.setdefault(worker_id, []).append(trial_id)
        now = utcnow()
        return [
            WorkerRead(
                id=w.id,
                name=w.name,
                host=w.host,
                slots=w.slots,
                devices=w.devices,
                registered_at=w.registered_at,
                last_heartbeat_at=w.last_heartbeat_at,
                online=(now - w.last_heartbeat_at).total_seconds() < OFFLINE_AFTER_SECONDS,
                running_trials=running.get(w.id, []),
            )
            for w in session.scalars(select(Worker).order_by(Worker.id))
        ]
