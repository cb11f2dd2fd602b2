"""Engine and session factory for SQLite (the embedded default) and PostgreSQL."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from llero.logs import get_logger

log = get_logger("llero.storage")


def _normalise_url(url: str) -> str:
    """Select psycopg 3 for PostgreSQL URLs that name no driver."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers continue while one writer commits; foreign keys are off by default in
    # SQLite and must be turned on for every connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _leave_checkpoints_to_thread(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


# How often the server's checkpoint thread copies the WAL into the database file.
CHECKPOINT_SECONDS = 1.0


class _Checkpoints(threading.Thread):
    """Copy SQLite's write-ahead log into the database file in the background.

    By default the commit that fills the log past 1000 pages runs the checkpoint and its fsync.
    So one request in a few hundred waited several milliseconds more: the p99 of a /v1 call at
    one connection was 6.5 ms, and 3.5 to 4.2 ms with this thread (one measurement each). A
    passive checkpoint waits for no reader or writer.
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


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, background_checkpoints: bool = False) -> None:
        """With ``background_checkpoints`` (the server), a SQLite database's log is checkpointed
        by a thread of this object instead of by the commits of requests."""
        self.url = _normalise_url(url)
        self.engine = make_engine(self.url, background_checkpoints=background_checkpoints)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._checkpoints: _Checkpoints | None = None
        if background_checkpoints and self.engine.dialect.name == "sqlite":
            self._checkpoints = _Checkpoints(self.engine)
            self._checkpoints.start()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session whose work is committed on success and rolled back on any error."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def dispose(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        self.engine.dispose()
