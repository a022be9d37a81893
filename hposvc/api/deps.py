"""Dependencies shared by the routes (Annotated aliases)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hposvc.db.session import Database
from hposvc.samplers import StudyCaches
from hposvc.schemas.common import MAX_ID
from hposvc.services.artifacts import ArtifactStore
from hposvc.settings import Settings


async def _database(request: Request) -> Database:
    return request.app.state.db


async def _caches(request: Request) -> StudyCaches:
    return request.app.state.caches


async def _artifacts(request: Request) -> ArtifactStore:
    return request.app.state.artifacts


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


DatabaseDep = Annotated[Database, Depends(_database)]
CachesDep = Annotated[StudyCaches, Depends(_caches)]
ArtifactsDep = Annotated[ArtifactStore, Depends(_artifacts)]
SettingsDep = Annotated[Settings, Depends(_settings)]

TrialId = Annotated[int, Path(ge=1, le=MAX_ID)]
WorkerId = Annotated[int, Path(ge=1, le=MAX_ID)]

_bearer = HTTPBearer(auto_error=False)


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With a token configured, every API call must carry it as a bearer token."""
    expected: bytes | None = request.app.state.token_hash
    if expected is None:
        return
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(hashlib.sha256(given).digest(), expected):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
