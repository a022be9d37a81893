"""Database: one engine per process, and the only code that commits or rolls back."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.exc import InvalidatePoolError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hposvc.errors import HposvcError, StorageError

logger = logging.getLogger(__name__)

_IMMEDIATE = "hposvc_immediate"
_NOWAIT = "hposvc_nowait"
_BUSY_TIMEOUT_MS = 60_000
_IDLE_SINCE = "hposvc_idle_since"
_PIPELINE = "hposvc_pipeline"
_IDS_AHEAD = 64


class WriteLockBusy(StorageError):
    """Another writer holds the database's write lock (a write that would not wait)."""


class Database:
    """An engine plus sessions; ``session(write=True)`` serializes writers on SQLite."""

    def __init__(
        self, url: str, *, pool_size: int = 20, ping_after_idle_seconds: float = 1.0
    ) -> None:
        """An engine for ``url``.

        Args:
            url: sqlite:// or postgresql:// (psycopg).
            pool_size: PostgreSQL connections kept open (as many again may open for a while).
            ping_after_idle_seconds: PostgreSQL: a connection that waited in the pool longer
                than this is tested before it is handed out (see ``_ping_when_idle``).
        """
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            _ping_when_idle(self.engine, ping_after_idle_seconds)
            event.listen(self.engine, "after_cursor_execute", _rows_now_in_a_pipeline)
        self._write_engine = self.engine.execution_options(**{_IMMEDIATE: True})
        self._write_nowait_engine = self._write_engine.execution_options(**{_NOWAIT: True})
        # One read statement needs no transaction around it: on PostgreSQL that saves the
        # BEGIN and COMMIT round trips (SQLite has none to save).
        self._read_once_engine = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        self._ids: dict[str, deque[int]] = {}
        self._ids_lock = threading.Lock()
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
    def connection(
        self, *, write: bool = False, nowait: bool = False, pipelined: bool = False
    ) -> Iterator[Connection]:
        """One transaction on a plain connection, for hot paths written in Core statements.

        ``nowait`` (SQLite, with ``write``): take the write lock only if it is free, else raise
        ``WriteLockBusy`` before anything ran, instead of waiting for it (the busy timeout).

        ``pipelined`` (PostgreSQL): statements go out without waiting for each answer
        (psycopg's pipeline mode) until one whose rows are read, which waits for the answers
        of all sent before it; the COMMIT goes out with the writes after the last such one.
        The BEGIN, a first statement that reads, then writes and the COMMIT take two round
        trips instead of one each (on the hot paths they run with the study locked). An error
        in a write is raised by the next statement that reads, or by the COMMIT: either way
        nothing of the transaction is stored.

        Raises:
            WriteLockBusy: with ``nowait``, another writer holds the lock.
            StorageError: the database failed.
        """
        engine = self.engine
        if write:
            engine = self._write_nowait_engine if nowait else self._write_engine
        try:
            with engine.begin() as conn:
                try:
                    if pipelined and not self.is_sqlite:
                        _start_pipeline(conn)
                    yield conn
                    if _PIPELINE in conn.info:
                        # Queued behind the writes; the pipeline's end sends them all and
                        # waits for every answer, so the commit below finds nothing to do.
                        conn.connection.driver_connection.execute("COMMIT")
                except BaseException as exc:
                    _end_pipeline(conn, exc)
                    raise
                _end_pipeline(conn, None)
        except WriteLockBusy:
            raise
        except OperationalError as exc:
            raise StorageError(f"database unavailable: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc}") from exc
        except self._driver_error as exc:  # raised by the pipeline's end, outside SQLAlchemy
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

    def reserve_id(self, table: str) -> int:
        """A new id for ``table``'s (PostgreSQL serial) ``id``, for a row not inserted yet.

        Ids are taken from the table's sequence ``_IDS_AHEAD`` at a time, in one round trip,
        and handed out from this process; one never inserted leaves a gap, as a rolled-back
        insert does. An insert that names its id needs no RETURNING, so in pipeline mode it
        waits for no answer.

        Raises:
            StorageError: the database failed.
        """
        with self._ids_lock:
            pool = self._ids.setdefault(table, deque())
            if not pool:
                statement = text(
                    "SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                    "FROM generate_series(1, :n)"
                )
                rows = self.read_once(statement, {"table": table, "n": _IDS_AHEAD})
                pool.extend(row[0] for row in rows)
            return pool.popleft()

    def dispose(self) -> None:
        self.engine.dispose()


def _start_pipeline(conn: Connection) -> None:
    mode = conn.connection.driver_connection.pipeline()
    conn.info[_PIPELINE] = (mode, mode.__enter__())


def _end_pipeline(conn: Connection, exc: BaseException | None) -> None:
    """Wait for the answers of what was sent; raise the first error (unless ``exc`` is raised).

    When ``exc`` is raised, the pipeline's own error is that failure seen again (a statement
    failed, so the pipeline aborted): it is logged at debug level. Handed ``exc``, psycopg
    would log it as a warning, for every batch that a hot path's guard sends to the general
    path, an expected event.
    """
    started = conn.info.pop(_PIPELINE, None)
    if started is None:
        return
    try:
        started[0].__exit__(None, None, None)
    except Exception as again:
        if exc is None:
            raise
        logger.debug("pipeline ended with %s after %r", again, exc)  # exc tells what went wrong


def _rows_now_in_a_pipeline(
    conn: Connection, _cursor: Any, _sql: str, _params: Any, context: Any, _many: bool
) -> None:
    """In a pipeline, wait for a statement's rows before SQLAlchemy reads its result.

    SQLAlchemy reads the result's columns right after sending it; in pipeline mode they come
    only when the pipeline syncs (with the answers of everything sent before it). A write
    that returns no rows need not wait.
    """
    started = conn.info.get(_PIPELINE)
    if started is None:
        return
    if context.is_crud and not context.compiled.effective_returning:
        return
    started[1].sync()


def _ping_when_idle(engine: Any, idle_seconds: float) -> None:
    """Test a pooled connection before use only when it has waited in the pool a while.

    ``pool_pre_ping`` tests every one, a round trip on each checkout: on the hot paths that
    round trip ran with the study locked (measured under load at K=4 on PostgreSQL: 0.8 ms
    of the 6 ms a batch held the lock). A connection back in the pool within the last
    ``idle_seconds`` was working then; a database that restarts is down for longer than that,
    so its old connections are tested when they are next used. A backend that dies alone
    within that second fails the request that uses it (503: workers retry, every call is
    idempotent), and that failure makes the pool drop every connection made before it.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # a new connection, or one that worked a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError(f"connection lost: {exc}") from exc
            raise


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
