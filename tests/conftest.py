"""Backends for every storage-touching test: SQLite and PostgreSQL.

PostgreSQL: HPOSVC_TEST_POSTGRES_URL (default: the local server at 127.0.0.1:5432). Each test
run creates a fresh database of its own and drops it at the end; each test starts from empty
tables. In CI (CI=true) a missing PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from hposvc.db.migrate import upgrade

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "HPOSVC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means: not reachable
        return str(exc).splitlines()[0]


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new empty PostgreSQL database, dropped afterwards; fails in CI when unreachable."""
    problem = _pg_available()
    if problem is not None:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {problem}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, schema at head."""
    with fresh_postgres_database("hposvc_test") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE intermediate_values, trials, studies, workers RESTART IDENTITY CASCADE")
        )
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database at schema head, once per backend."""
    if request.param == "sqlite":
        path = tmp_path / "hposvc.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``hposvc server`` as a real process on a free port."""

    def __init__(
        self, database_url: str, log_path: Path, port: int | None = None, **env: str
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.log_path = log_path
        self.env = {
            **os.environ,
            "HPOSVC_DATABASE_URL": database_url,
            "HPOSVC_PORT": str(self.port),
            "HPOSVC_LOG_LEVEL": "WARNING",
            "HPOSVC_ARTIFACTS_DIR": str(log_path.parent / "artifacts"),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hposvc.cli", "server"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start in 60 s")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    servers: list[ServerProcess] = []

    def start(database_url: str, port: int | None = None, **env: str) -> ServerProcess:
        log = tmp_path / f"server{len(servers)}.log"
        server = ServerProcess(database_url, log, port, **env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
