"""Engine and session factory for SQLite (the embedded default) and PostgreSQL."""

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from llero.logs import get_logger
from llero.storage.immediate import DEFERRED_KEY, ImmediateTransactions, KeptConnections

log = get_logger("llero.storage")


def _normalise_url(url: str) -> str:
    """Select psycopg 3 for PostgreSQL URLs that name no driver."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


# How long a statement waits for another connection's lock before it fails, in ms.
BUSY_TIMEOUT_MS = 5000
_SET_BUSY_TIMEOUT = f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}"


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers continue while one writer commits; foreign keys are off by default in
    # SQLite and must be turned on for every connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(_SET_BUSY_TIMEOUT)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _leave_checkpoints_to_thread(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


# How often the server's checkpoint thread copies the WAL into the database file.
CHECKPOINT_SECONDS = 1.0


# The maximum time a RESTART checkpoint waits for the write lock and for readers, in ms. Writers
# that come meanwhile wait for it, so it is kept short, and a checkpoint that gives up is retried
# a second later.
RESTART_WAIT_MS = 20
_SET_RESTART_WAIT = f"PRAGMA busy_timeout={RESTART_WAIT_MS}"


class _Checkpoints(threading.Thread):
    """Copy SQLite's write-ahead log into the database file in the background.

    By default the commit that fills the log past 1000 pages runs the checkpoint and its fsync.
    So one request in a few hundred waited several milliseconds more: the p99 of a /v1 call at
    one connection was 6.5 ms, and 3.5 to 4.2 ms with this thread (one measurement each).

    A passive checkpoint waits for no reader or writer, but under a steady stream of writes it
    never finds the log wholly copied, so the log is never rewound and grew past 1.9 GB in 80
    seconds of /v1 calls. So each round copies most frames passively, then copies the few that
    came since in a RESTART checkpoint, which holds off writers for that short time and lets the
    next writer start the log from its beginning.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(name="llero-sqlite-checkpoints", daemon=True)
        self._engine = engine
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(CHECKPOINT_SECONDS):
            self.checkpoint()

    def checkpoint(self) -> None:
        try:
            with self._engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                connection.exec_driver_sql(_SET_RESTART_WAIT)
                try:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)")
                finally:
                    connection.exec_driver_sql(_SET_BUSY_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - a failed checkpoint is retried next time
            log.warning("checkpoint_failed", error=type(error).__name__)

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        self.checkpoint()


def make_engine(url: str, *, background_checkpoints: bool = False) -> Engine:
    """Return the engine of ``url``. With ``background_checkpoints``, SQLite connections leave
    checkpoints to the thread that ``Database`` starts."""
    url = _normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            # Opening a SQLite connection runs the pragmas above, so connections are kept
            # rather than opened and closed under load: one per worker thread that may hold
            # one (AnyIO's default pool has 40), and an authenticated request uses two in turn.
            pool_size=40,
            max_overflow=8,
        )
        event.listen(engine, "connect", _configure_sqlite)
        if background_checkpoints:
            event.listen(engine, "connect", _leave_checkpoints_to_thread)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)


class _KeptReaders:
    """One SQLite connection per thread, kept open for single reads outside any transaction.

    A pool check-out and check-in took 7 of the 9.5 us of a one-row read (one measurement).
    """

    def __init__(self, url: str, on_connect: list[Callable[[Any, Any], None]]) -> None:
        self._connections = KeptConnections(url, on_connect)
        self._local = threading.local()

    def connection(self) -> Any:
        """Return this thread's driver connection, opened on first use."""
        driver = getattr(self._local, "driver", None)
        if driver is None:
            driver = self._connections.connect().connection.driver_connection
            self._local.driver = driver
        return driver

    def dispose(self) -> None:
        """Close the connections of every thread; call it when no read runs."""
        self._connections.dispose()


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, background_checkpoints: bool = False) -> None:
        """With ``background_checkpoints`` (the server), a SQLite database's log is checkpointed
        by a thread of this object instead of by the commits of requests."""
        self.url = _normalise_url(url)
        self.engine = make_engine(self.url, background_checkpoints=background_checkpoints)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._background_checkpoints = background_checkpoints
        # Made on the first use of transaction_without_waiting and of reader_connection.
        self._immediate: ImmediateTransactions | None = None
        self._readers: _KeptReaders | None = None
        self._checkpoints: _Checkpoints | None = None
        if background_checkpoints and self.is_sqlite:
            self._checkpoints = _Checkpoints(self.engine)
            self._checkpoints.start()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session whose work is committed on success and rolled back on any error."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def transaction_without_waiting(self) -> Iterator[Session]:
        """Yield a session that holds SQLite's write lock from its start to its commit.

        Raises WriteLockBusy before any work when another connection holds the lock, so the
        caller can run the work where waiting does no harm. Once the lock is held, no statement
        of the transaction waits for another connection. SQLite only.
        """
        if self._immediate is None:
            if not self.is_sqlite:
                raise TypeError("transaction_without_waiting needs a SQLite database")
            self._immediate = ImmediateTransactions(self.url, self.sessions, self._on_connect())
        with self._immediate.transaction() as session:
            yield session

    def reader_connection(self) -> Any:
        """Return the SQLite driver connection that this thread keeps for single reads.

        Each statement on it reads the latest committed data; nothing may begin a transaction
        on it. SQLite only: a PostgreSQL connection kept by an idle thread would hold a server
        process.
        """
        if self._readers is None:
            if not self.is_sqlite:
                raise TypeError("reader_connection needs a SQLite database")
            self._readers = _KeptReaders(self.url, self._on_connect())
        return self._readers.connection()

    def _on_connect(self) -> list[Callable[[Any, Any], None]]:
        on_connect: list[Callable[[Any, Any], None]] = [_configure_sqlite]
        if self._background_checkpoints:
            on_connect.append(_leave_checkpoints_to_thread)
        return on_connect

    def in_own_transaction(
        self,
        session: Session | None,
        work: Callable[[Session], None],
        *,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """Run ``work`` in a transaction of its own, apart from that of ``session``, whose
        rollback must not undo it, such as the audit record of a refusal.

        It runs at once, unless ``session`` holds SQLite's write lock from its start (see
        ``transaction_without_waiting``): a second transaction would then wait for that lock
        until it timed out, so ``work`` runs right after the transaction of ``session`` ends.
        An error of the transaction goes to ``on_error`` when one is given, else it is raised.

        NOTE: deferred work runs on the thread of the transaction it waited for, which is the
        event loop under ``run_transaction``, and there it waits for the write lock, up to the
        busy timeout, when another process holds it. Only refusals and failures defer work.
        """
        deferred = None if session is None else session.info.get(DEFERRED_KEY)
        apart = functools.partial(self._run_apart, work, on_error)
        if deferred is not None:
            deferred.append(apart)
            return
        apart()

    def _run_apart(
        self, work: Callable[[Session], None], on_error: Callable[[Exception], None] | None
    ) -> None:
        try:
            with self.transaction() as own:
                work(own)
        except Exception as error:
            if on_error is None:
                raise
            on_error(error)

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def dispose(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        self.engine.dispose()
        if self._immediate is not None:
            self._immediate.dispose()
            self._immediate = None
        if self._readers is not None:
            self._readers.dispose()
            self._readers = None
