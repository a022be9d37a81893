"""A statement run on the driver's cursor writes exactly what ``Connection.execute`` writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, insert, select

from hposvc.db.driver_statements import DriverStatement
from hposvc.db.models import Worker
from hposvc.db.session import Database

_workers = Worker.__table__
_INSERT = insert(_workers).values(
    name=bindparam("b_name"),
    host="fixed-host",  # a value the statement carries itself
    slots=bindparam("b_slots"),
    devices=bindparam("b_devices"),  # JSON
    registered_at=bindparam("b_at"),  # an aware datetime, stored as the column type says
    last_heartbeat_at=bindparam("b_at"),
)


def test_a_driver_statement_writes_what_execute_writes(database_url: str) -> None:
    db = Database(database_url)
    names = [f"via-{how}-{uuid.uuid4().hex}" for how in ("execute", "driver")]
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    params = {"b_slots": 3, "b_devices": ["cuda:0", "cuda:1"], "b_at": at, "unused": 1}
    with db.connection(write=True) as conn:
        conn.execute(_INSERT, {**params, "b_name": names[0]})
        DriverStatement(_INSERT).run(conn, {**params, "b_name": names[1]})
    with db.connection() as conn:
        rows = conn.execute(select(_workers).where(_workers.c.name.in_(names))).all()
    by_name = {row.name: row._mapping for row in rows}
    written = [{**by_name[name], "id": 0, "name": ""} for name in names]
    assert written[0] == written[1]
    assert written[1]["devices"] == ["cuda:0", "cuda:1"] and written[1]["registered_at"] == at
    assert written[1]["host"] == "fixed-host"
    db.dispose()


def test_a_driver_statement_takes_only_what_it_can_run(database_url: str) -> None:
    with pytest.raises(ValueError, match="returns no rows"):
        DriverStatement(insert(_workers).values(name=bindparam("n")).returning(_workers.c.id))
    expanding = _workers.delete().where(_workers.c.id.in_(bindparam("ids", expanding=True)))
    db = Database(database_url)
    with db.connection(write=True) as conn, pytest.raises(ValueError, match="expanding"):
        DriverStatement(expanding).run(conn, {"ids": [1]})
    db.dispose()


@pytest.mark.postgres
def test_a_driver_statement_sends_psycopg_only_its_own_parameters(postgres_url: str) -> None:
    """The hot paths pass one set of parameters to several statements. psycopg parses a
    statement anew on every run when it comes with more than 50 parameters; with only its own,
    the parse is cached."""
    from psycopg._queries import _query2pg

    db = Database(postgres_url)
    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    shared = {"b_slots": 1, "b_devices": [], "b_at": at, **{f"other_{i}": i for i in range(60)}}
    statement = DriverStatement(_INSERT)
    with db.connection(write=True) as conn:
        statement.run(conn, {**shared, "b_name": f"first-{uuid.uuid4().hex}"})
        hits = _query2pg.cache_info().hits
        for _ in range(3):
            statement.run(conn, {**shared, "b_name": f"again-{uuid.uuid4().hex}"})
        assert _query2pg.cache_info().hits == hits + 3
    db.dispose()
