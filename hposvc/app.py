"""create_app(settings): the FastAPI application, its lifespan and its routes."""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hposvc import __version__
from hposvc.api.errors import install_error_handlers
from hposvc.api.fast_lane import WorkerFastLane
from hposvc.api.limits import BodySizeLimit
from hposvc.api.router import api_router, health_router
from hposvc.dashboard.routes import router as dashboard_router
from hposvc.dashboard.routes import static_files
from hposvc.db.migrate import upgrade
from hposvc.db.session import Database
from hposvc.samplers import StudyCaches
from hposvc.services.artifacts import ArtifactStore
from hposvc.services.charts import ChartCache
from hposvc.services.leases import expire_all
from hposvc.settings import Settings

logger = logging.getLogger(__name__)


class LeaseSweeper:
    """A thread that fails trials whose lease ran out (claims and reports also check)."""

    def __init__(self, db: Database, caches: StudyCaches, interval: float) -> None:
        self._db, self._caches, self._interval = db, caches, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                expire_all(db=self._db, caches=self._caches)
            except Exception:  # keep sweeping: a failed sweep is retried next time
                logger.exception("lease sweep failed")


def create_app(
    settings: Settings,
    *,
    migrate: bool = True,
    fast_lane: bool = True,
    freeze_startup_heap: bool = False,
) -> FastAPI:
    """The application; the database is opened (and upgraded) when it starts.

    ``fast_lane=False`` leaves the worker protocol's hot routes to FastAPI alone (the tests
    compare the two). ``freeze_startup_heap`` is for a process that runs this one app (the
    ``hposvc server`` command, the demo): once started, the objects that imports, migrations
    and the open database left behind are moved out of the cyclic garbage collector's reach
    (``gc.freeze``). They live as long as the process, and each full collection would
    otherwise walk all of them again: about 90 ms with every request waiting, measured under
    the dispatch benchmark.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            upgrade(settings.database_url)
        db = Database(settings.database_url)
        app.state.db = db
        app.state.caches = StudyCaches(settings.max_cached_studies)
        app.state.charts = ChartCache()
        app.state.artifacts = ArtifactStore(settings.artifacts_dir, settings.max_artifact_bytes)
        sweeper = LeaseSweeper(db, app.state.caches, settings.lease_check_seconds)
        sweeper.start()
        if freeze_startup_heap:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            sweeper.stop()
            db.dispose()

    app = FastAPI(
        title="hposvc",
        version=__version__,
        description="Hyperparameter optimization as a service.",
        lifespan=lifespan,
        generate_unique_id_function=lambda route: (
            f"{route.tags[0]}-{route.name}" if route.tags else route.name
        ),
    )
    app.state.settings = settings
    app.state.token_hash = (
        hashlib.sha256(settings.token.encode()).digest() if settings.token else None
    )
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(api_router)
    app.include_router(dashboard_router)
    app.mount("/static", static_files, name="static")
    if fast_lane:
        app.add_middleware(WorkerFastLane)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, exempt_paths=("/artifacts/",)
    )
    return app
