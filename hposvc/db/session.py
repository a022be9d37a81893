"""Database: one engine per process, and the only code that commits or rolls back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hposvc.errors import HposvcError, StorageError

_IMMEDIATE = "hposvc_immediate"
_NOWAIT = "hposvc_nowait"
_BUSY_TIMEOUT_MS = 60_000


class WriteLockBusy(StorageError):
    """Another writer holds the database's write lock (a write that would not wait)."""


class Database:
    """An engine plus sessions; ``session(write=True)`` serializes writers on SQLite."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._write_engine = self.engine.execution_options(**{_IMMEDIATE: True})
        self._write_nowait_engine = self._write_engine.execution_options(**{_NOWAIT: True})
        # One read statement needs no transaction around it: on PostgreSQL that saves the
        # BEGIN and COMMIT round trips (SQLite has none to save).
        self._read_once_engine = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction: commits when the block ends, rolls back on any error.

        With ``write`` on SQLite the transaction starts with ``BEGIN IMMEDIATE``: it takes the
        database's write lock first, so the reads inside it cannot go stale.

        Raises:
            StorageError: the database failed (locked, unreachable, constraint broken).
        """
        factory = self._write_sessions if write else self._read_sessions
        session = factory()
        try:
            yield session
            session.commit()
        except HposvcError:
            session.rollback()
            raise
        except OperationalError as exc:
            session.rollback()
            raise StorageError(f"database unavailable: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            session.rollback()
            raise StorageError(f"database error: {exc}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def connection(self, *, write: bool = False, nowait: bool = False) -> Iterator[Connection]:
        """One transaction on a plain connection, for hot paths written in Core statements.

        ``nowait`` (SQLite, with ``write``): take the write lock only if it is free, else raise
        ``WriteLockBusy`` before anything ran, instead of waiting for it (the busy timeout).

        Raises:
            WriteLockBusy: with ``nowait``, another writer holds the lock.
            StorageError: the database failed.
        """
        engine = self.engine
        if write:
            engine = self._write_nowait_engine if nowait else self._write_engine
        try:
            with engine.begin() as conn:
                yield conn
        except WriteLockBusy:
            raise
        except OperationalError as exc:
            raise StorageError(f"database unavailable: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc}") from exc

    def read_once(self, statement: Any, params: dict[str, Any]) -> list[Any]:
        """The rows of one read statement, run on its own (no transaction on PostgreSQL).

        Raises:
            StorageError: the database failed.
        """
        try:
            with self._read_once_engine.connect() as conn:
                return list(conn.execute(statement, params))
        except OperationalError as exc:
            raise StorageError(f"database unavailable: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Any) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if not options.get(_NOWAIT, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_IMMEDIATE, False) else "BEGIN")
            return
        # Straight on the driver's connection: a busy lock must not go through SQLAlchemy's
        # error handling, which would invalidate the connection.
        driver = conn.connection.driver_connection
        driver.execute("PRAGMA busy_timeout=0")
        try:
            driver.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            raise WriteLockBusy("the database's write lock is held") from None
        finally:
            driver.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
