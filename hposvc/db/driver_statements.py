"""Core statements compiled once and run on the driver's own cursor.

The hot paths write a few fixed statements per request. Through ``Connection.execute`` each
costs SQLAlchemy's per-execution machinery besides the driver's own work (measured: 135 us
of CPU per statement against 80 us through psycopg alone, PostgreSQL; on SQLite the
statements themselves take less than that machinery). A ``DriverStatement`` compiles its
statement once per dialect, with SQLAlchemy, and keeps the SQL text, the order of its
parameters and each parameter's bind processor (JSON to text, datetimes as SQLAlchemy stores
them), so what reaches the database is what ``Connection.execute`` would have sent. It runs
in the connection's transaction (and, on PostgreSQL, in its pipeline).

For statements that return no rows and whose parameters are all plain values (no expanding
``IN`` lists, no ``literal_execute``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # The statement's parameters: in the order the SQL takes them (positional styles), else
    # by name. Only these are sent: the driver caches its parse of a statement sent with at
    # most 50 parameters (psycopg), and callers pass parameters shared by several statements.
    names: tuple[str, ...]
    positional: bool
    fixed: dict[str, Any]  # values the statement carries itself (``.values(state="...")``)
    processors: dict[str, Callable[[Any], Any]]


class DriverStatement:
    """A statement run on the DBAPI cursor of a SQLAlchemy connection."""

    def __init__(self, statement: Any) -> None:
        if len(statement.exported_columns):  # the RETURNING columns
            raise ValueError("a DriverStatement returns no rows")
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        done = self._compiled.get(dialect.name)
        if done is None:
            compiled = self.statement.compile(dialect=dialect)
            if "__[POSTCOMPILE_" in compiled.string:
                raise ValueError("a DriverStatement takes no expanding or literal_execute binds")
            processors = {}
            fixed = {}
            for name, bind in compiled.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors[name] = processor
                if not bind.required:
                    fixed[name] = bind.effective_value
            done = _Compiled(
                sql=compiled.string,
                names=tuple(compiled.positiontup or compiled.binds),
                positional=compiled.positional,
                fixed=fixed,
                processors=processors,
            )
            self._compiled[dialect.name] = done
        return done

    def run(self, conn: Connection, params: dict[str, Any]) -> None:
        """Run in ``conn``'s transaction; ``params`` by bind name, as ``conn.execute`` takes them.

        Raises:
            KeyError: a parameter the statement needs is missing.
            The driver's errors, as the driver raises them.
        """
        compiled = self._for(conn.dialect)
        values = {**compiled.fixed, **params} if compiled.fixed else params
        processors = compiled.processors
        row = [
            processors[name](values[name]) if name in processors else values[name]
            for name in compiled.names
        ]
        args = tuple(row) if compiled.positional else dict(zip(compiled.names, row, strict=True))
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(compiled.sql, args)
        finally:
            cursor.close()
