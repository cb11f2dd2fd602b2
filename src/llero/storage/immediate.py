"""SQLite transactions that take the write lock when they begin and never wait for it.

The server runs its short write transactions on the event loop itself (see
``llero.storage.threads.run_transaction``). A statement that waited there for another
connection's lock would stop every request of the process, so these transactions begin with
BEGIN IMMEDIATE under a busy timeout of zero. Either the lock is free, and nothing in the
transaction waits after that, or the transaction fails before any work and the caller tries
again later.

Each thread keeps one connection, opened on its first transaction, because a pool check-out,
a check-in and SQLAlchemy's BEGIN each cost as much as a short statement. On one event loop a
transaction runs to its end before another starts, so a thread never needs two.
"""

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

# The key, in Session.info, of the work that must wait until the transaction has ended.
DEFERRED_KEY = "llero.after_write_lock"


class WriteLockBusy(Exception):
    """Another connection holds SQLite's write lock, so a transaction that must not wait did not
    start. Nothing was read or written."""


def _without_waiting(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is turned off: each transaction starts with the
    # BEGIN IMMEDIATE of _begin_immediate, and the driver's commit() sends COMMIT while a
    # transaction is open.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    # Straight through the driver: SQLAlchemy's exec_driver_sql cost more than the BEGIN itself.
    connection.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]


class ImmediateTransactions:
    """Transactions on the SQLite database ``url`` that hold the write lock from their start.

    Sessions come from ``sessions``, so the settings and keys attached to that factory apply.
    ``on_connect`` are the engine's usual connect listeners (pragmas).
    """

    def __init__(
        self,
        url: str,
        sessions: sessionmaker[Session],
        on_connect: Sequence[Callable[[Any, Any], None]],
    ) -> None:
        self._sessions = sessions
        self._engine = create_engine(
            url, connect_args={"check_same_thread": False}, poolclass=NullPool
        )
        for listener in on_connect:
            event.listen(self._engine, "connect", listener)
        event.listen(self._engine, "connect", _without_waiting)
        event.listen(self._engine, "begin", _begin_immediate)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Connection] = []

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session whose work is committed on success and rolled back on any error.

        Raises WriteLockBusy, before any work, when another connection holds the write lock.
        Transactions of their own, which this one's lock would block, wait in the session's
        info under DEFERRED_KEY (see ``Database.in_own_transaction``) and run when this one
        has ended, after a commit and after a rollback alike.
        """
        deferred: list[Callable[[], None]] = []
        session = self._session()
        try:
            with session.begin():
                try:
                    session.connection()
                except sqlite3.OperationalError as error:
                    if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                        raise WriteLockBusy from None
                    raise
                session.info[DEFERRED_KEY] = deferred
                yield session
        finally:
            # The next transaction of this thread starts with no objects and no deferred work.
            session.expunge_all()
            session.info.pop(DEFERRED_KEY, None)
            for run in deferred:
                run()

    def _session(self) -> Session:
        """Return this thread's session, bound to its connection and made on first use.

        Making and closing a session took 17 of the 45 us of an empty transaction (one
        measurement), so each thread keeps one, as it keeps its connection.
        """
        connection = self._connection()
        session: Session | None = getattr(self._local, "session", None)
        if session is None or session.bind is not connection:
            session = self._sessions(bind=connection)
            self._local.session = session
        return session

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self._engine.connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        elif connection.in_transaction():
            # Left open by a commit that failed; a session would join it and never commit.
            connection.rollback()
        return connection

    def dispose(self) -> None:
        """Close the connections of every thread; call it when no transaction runs."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._engine.dispose()
