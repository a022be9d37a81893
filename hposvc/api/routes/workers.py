"""Worker routes: register, heartbeat, list."""

from __future__ import annotations

from fastapi import APIRouter

from hposvc.api.deps import DatabaseDep, WorkerId
from hposvc.schemas.common import ErrorResponse
from hposvc.schemas.workers import HeartbeatResponse, WorkerRead, WorkerRegister, WorkerRegistered
from hposvc.services import workers

router = APIRouter(prefix="/workers", tags=["workers"])


@router.post("", responses={422: {"model": ErrorResponse}})
def register_worker(body: WorkerRegister, db: DatabaseDep) -> WorkerRegistered:
    """Register a worker (the same name and host get the same id back)."""
    return WorkerRegistered(id=workers.register(db=db, body=body))


@router.post("/{worker_id}/heartbeat", responses={404: {"model": ErrorResponse}})
def heartbeat(worker_id: WorkerId, db: DatabaseDep) -> HeartbeatResponse:
    """Keep a worker and the leases of its running trials alive."""
    return workers.heartbeat(db=db, worker_id=worker_id)


@router.get("")
def list_workers(db: DatabaseDep) -> list[WorkerRead]:
    """Every registered worker, with whether it is online and what it runs."""
    return workers.list_workers(db=db)
