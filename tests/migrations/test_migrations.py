"""Migrations on an empty database: the real `alembic upgrade head`, no drift, `hposvc db upgrade`.

Each test gets an EMPTY database (no schema): a new SQLite file, or a new PostgreSQL database
made through the admin URL of tests/conftest.py and dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from hposvc.db import models  # noqa: F401  (registers the tables)
from hposvc.db.base import Base
from hposvc.db.migrate import alembic_config
from tests.conftest import REPO, fresh_postgres_database

BIN = Path(sys.executable).parent
TABLES = {"studies", "trials", "workers", "intermediate_values"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with fresh_postgres_database("hposvc_migrations") as url:
        yield url


def _run(args: list[str], database_url: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HPOSVC_DATABASE_URL": database_url}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _alembic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The `alembic` command from the repository root (alembic.ini is there)."""
    return _run([str(BIN / "alembic"), *args], database_url)


def _tables(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _versions(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [
                row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))
            ]
    finally:
        engine.dispose()


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_the_database_starts_empty(empty_database_url: str) -> None:
    assert _tables(empty_database_url) == set()


def test_alembic_upgrade_head_creates_every_table(empty_database_url: str) -> None:
    _alembic(empty_database_url, "upgrade", "head")
    assert _tables(empty_database_url) == TABLES | {"alembic_version"}
    assert _versions(empty_database_url) == [_head()]
    assert set(Base.metadata.tables) == TABLES


def test_models_and_migrations_do_not_drift(empty_database_url: str) -> None:
    _alembic(empty_database_url, "upgrade", "head")
    engine = create_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "render_as_batch": True}
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
    # the same question as the CLI asks it (it exits non-zero on any pending change)
    _alembic(empty_database_url, "check")


def test_downgrade_to_base_and_back(empty_database_url: str) -> None:
    _alembic(empty_database_url, "upgrade", "head")
    _alembic(empty_database_url, "downgrade", "base")
    assert _tables(empty_database_url) - {"alembic_version"} == set()
    _alembic(empty_database_url, "upgrade", "head")
    assert _tables(empty_database_url) == TABLES | {"alembic_version"}
    assert _versions(empty_database_url) == [_head()]


def test_hposvc_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    """Run from another directory: the CLI must find the migrations without alembic.ini."""
    path = tmp_path / "fresh.db"
    url = f"sqlite:///{path}"
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    first = _run([str(BIN / "hposvc"), "db", "upgrade"], url, cwd=workdir)
    assert "head" in first.stdout
    assert _tables(url) == TABLES | {"alembic_version"}
    _run([str(BIN / "hposvc"), "db", "upgrade"], url, cwd=workdir)
    assert _tables(url) == TABLES | {"alembic_version"}
    assert _versions(url) == [_head()]
    assert not (workdir / "hposvc.db").exists()  # the URL was used, not the default
