"""PostgreSQL connections: tested before use only after they waited in the pool; ids reserved."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from hposvc.db.session import Database
from hposvc.errors import StorageError

pytestmark = pytest.mark.postgres
_PID = text("SELECT pg_backend_pid()")


def _kill_backend(url: str, pid: int) -> None:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    admin.dispose()


def test_a_connection_that_waited_is_tested_and_replaced(postgres_url: str) -> None:
    """A backend that died while its connection waited in the pool costs no request."""
    db = Database(postgres_url, ping_after_idle_seconds=0.0)
    [(pid,)] = db.read_once(_PID, {})
    _kill_backend(postgres_url, pid)
    [(new_pid,)] = db.read_once(_PID, {})  # the ping found it dead: a new connection
    assert new_pid != pid
    db.dispose()


def test_a_connection_back_a_moment_ago_is_not_tested(postgres_url: str) -> None:
    """No round trip for a connection that worked within the last second (the hot paths')."""
    db = Database(postgres_url, ping_after_idle_seconds=60.0)
    [(pid,)] = db.read_once(_PID, {})
    _kill_backend(postgres_url, pid)
    with pytest.raises(StorageError):  # untested: the request that uses it fails...
        db.read_once(_PID, {})
    [(new_pid,)] = db.read_once(_PID, {})  # ...and the pool drops it
    assert new_pid != pid
    db.dispose()


def test_ids_reserved_ahead_are_never_handed_out_twice(postgres_url: str) -> None:
    """Two processes' reservations and the database's own inserts never meet."""
    first, second = Database(postgres_url), Database(postgres_url)
    mine = [first.reserve_id("workers") for _ in range(70)]  # past one block of reserved ids
    theirs = [second.reserve_id("workers") for _ in range(3)]
    with first.connection(write=True) as conn:
        inserted = conn.execute(
            text(
                "INSERT INTO workers (name, host, slots, devices, registered_at, "
                "last_heartbeat_at) VALUES (:name, 'h', 1, '[]', now(), now()) RETURNING id"
            ),
            {"name": f"w-{uuid.uuid4().hex}"},  # the database is shared with other tests
        ).scalar_one()
    assert mine == sorted(mine) and len({*mine, *theirs, inserted}) == 74
    first.dispose()
    second.dispose()
