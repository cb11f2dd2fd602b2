"""Transactions on the event loop: SQLite's write lock taken at BEGIN without waiting, retries
that leave the loop free, transactions of their own deferred past the lock, and a log that
checkpoints rewind under a steady stream of writes."""

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from llero.storage import db as storage_db
from llero.storage.db import Database
from llero.storage.immediate import WriteLockBusy
from llero.storage.threads import run_transaction


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "immediate.db"


@pytest.fixture
def database(sqlite_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{sqlite_path}")
    with database.transaction() as session:
        session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
    yield database
    database.dispose()


def _bodies(database: Database) -> list[str]:
    with database.reader() as session:
        return list(session.scalars(text("SELECT body FROM notes ORDER BY rowid")))


def _add(session: Session, body: str) -> None:
    session.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": body})


@pytest.fixture
def lock_holder(sqlite_path: Path) -> Iterator[sqlite3.Connection]:
    """A second connection, as another process would have, that can hold the write lock."""
    connection = sqlite3.connect(sqlite_path, isolation_level=None, check_same_thread=False)
    yield connection
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    connection.close()


class UnitOfWorkFailed(Exception):
    pass


class _Mapped(DeclarativeBase):
    pass


class Note(_Mapped):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str]


def _add_then_fail(database: Database, body: str) -> None:
    with database.transaction_without_waiting() as session:
        _add(session, body)
        raise UnitOfWorkFailed


def test_transaction_commits_and_rolls_back(database: Database) -> None:
    with database.transaction_without_waiting() as session:
        _add(session, "kept")
    with pytest.raises(UnitOfWorkFailed):
        _add_then_fail(database, "dropped")

    assert _bodies(database) == ["kept"]


def test_unflushed_objects_are_committed(database: Database) -> None:
    with database.transaction_without_waiting() as session:
        session.add(Note(body="added"))

    assert _bodies(database) == ["added"]


def test_next_transaction_runs_after_failed_flush(database: Database) -> None:
    with database.transaction_without_waiting() as session:
        session.add(Note(id=1, body="first"))
    with pytest.raises(IntegrityError):
        _add_duplicate(database)
    with database.transaction_without_waiting() as session:
        _add(session, "after")
        first = session.get(Note, 1)

    assert _bodies(database) == ["first", "after"]
    assert first is not None
    assert first.body == "first"


def test_session_follows_factory_settings(database: Database) -> None:
    with database.transaction_without_waiting() as session:
        _add(session, "before")
    database.sessions.configure(info={"marker": "attached later"})

    with database.transaction_without_waiting() as session:
        _add(session, "after")
        info = dict(session.info)

    assert info.get("marker") == "attached later"
    assert _bodies(database) == ["before", "after"]


def _add_duplicate(database: Database) -> None:
    with database.transaction_without_waiting() as session:
        _add(session, "dropped")
        # Fails when the transaction flushes it, after the work.
        session.add(Note(id=1, body="same id"))


def test_busy_lock_raises_before_work(database: Database, lock_holder: sqlite3.Connection) -> None:
    lock_holder.execute("BEGIN IMMEDIATE")
    started = time.perf_counter()

    with pytest.raises(WriteLockBusy):
        _add_then_fail(database, "never")

    # No busy timeout: the error is immediate, not after 5 seconds of waiting, and it comes
    # before the work, which would have raised UnitOfWorkFailed.
    assert time.perf_counter() - started < 0.5
    lock_holder.execute("ROLLBACK")
    with database.transaction_without_waiting() as session:
        _add(session, "after")
    assert _bodies(database) == ["after"]


def test_transaction_holds_lock_from_begin(
    database: Database, lock_holder: sqlite3.Connection
) -> None:
    lock_holder.execute("PRAGMA busy_timeout=0")

    with database.transaction_without_waiting() as session:
        # Nothing written yet, and still no other connection can begin writing.
        session.execute(text("SELECT count(*) FROM notes"))
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            lock_holder.execute("BEGIN IMMEDIATE")


def test_run_transaction_retries_until_lock_free(
    database: Database, lock_holder: sqlite3.Connection
) -> None:
    lock_holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.1, lambda: lock_holder.execute("COMMIT"))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def main() -> str:
        ticker = asyncio.create_task(tick())
        release.start()
        body = await run_transaction(database, _insert_on_thread)
        ticker.cancel()
        return body

    thread_name = asyncio.run(main())
    release.join()

    # The work ran on the loop's own thread once the lock was released, and meanwhile the
    # loop went on serving other tasks.
    assert thread_name == threading.current_thread().name
    assert ticks >= 5
    assert _bodies(database) == [thread_name]


def _insert_on_thread(session: Session) -> str:
    name = threading.current_thread().name
    _add(session, name)
    return name


def test_own_transaction_runs_after_rollback(database: Database) -> None:
    order: list[str] = []

    def record(own: Session) -> None:
        order.append("own transaction")
        _add(own, "refusal recorded")

    def refuse() -> None:
        with database.transaction_without_waiting() as session:
            _add(session, "rolled back")
            database.in_own_transaction(session, record)
            order.append("refused")
            raise UnitOfWorkFailed

    started = time.perf_counter()
    with pytest.raises(UnitOfWorkFailed):
        refuse()

    # Run at once, it would have waited for the lock this transaction held until it timed out.
    assert time.perf_counter() - started < 1
    assert order == ["refused", "own transaction"]
    assert _bodies(database) == ["refusal recorded"]


def test_own_transaction_runs_at_once_elsewhere(database: Database) -> None:
    with database.transaction() as session:
        database.in_own_transaction(session, lambda own: _add(own, "own"))
        assert _bodies(database) == ["own"]
        _add(session, "outer")

    assert _bodies(database) == ["own", "outer"]


def test_own_transaction_error_goes_to_handler(database: Database) -> None:
    seen: list[Exception] = []

    def fail(own: Session) -> None:
        own.execute(text("INSERT INTO missing_table VALUES (1)"))

    with database.transaction_without_waiting() as session:
        database.in_own_transaction(session, fail, on_error=seen.append)
        _add(session, "committed")

    assert [type(error).__name__ for error in seen] == ["OperationalError"]
    assert _bodies(database) == ["committed"]


def test_checkpoints_rewind_log_under_writes(
    sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_db, "CHECKPOINT_SECONDS", 0.05)
    database = Database(f"sqlite:///{sqlite_path}", background_checkpoints=True)
    written = 0
    try:
        with database.transaction() as session:
            session.execute(text("CREATE TABLE notes (body TEXT NOT NULL)"))

        async def write_for_a_second() -> None:
            nonlocal written
            deadline = time.perf_counter() + 1.0
            while time.perf_counter() < deadline:
                await run_transaction(database, lambda session: _add(session, "x" * 3000))
                written += 1
                # A server's loop does other work between its transactions.
                await asyncio.sleep(0.0005)

        # A steady stream of writes, so a passive checkpoint never finds the log all copied.
        asyncio.run(write_for_a_second())
        log_size = Path(f"{sqlite_path}-wal").stat().st_size
    finally:
        database.dispose()

    # Each commit appends three 4096-byte pages or more (the log grew by 12.5 kB per commit
    # when it was never rewound). Rewound every 50 ms, it contains a small part of them.
    assert written > 200
    assert log_size < written * 4096
