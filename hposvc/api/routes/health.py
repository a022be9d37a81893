"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from hposvc import __version__
from hposvc.api.deps import DatabaseDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(db: DatabaseDep) -> dict[str, str]:
    """Server and database are up."""
    with db.session() as session:
        session.execute(text("SELECT 1"))
    return {"status": "ok", "version": __version__}
