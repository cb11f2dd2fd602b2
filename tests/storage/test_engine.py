"""The engine: SQLite connections in WAL mode with foreign keys on, transactions that keep
nothing of a failed unit of work, and timestamps stored in UTC."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import exc, func, select, text

from llero.forge.models import Category, Tool
from llero.storage.db import CHECKPOINT_SECONDS, Database


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'engine.db'}")
    yield database
    database.dispose()


def test_sqlite_connections_use_wal_and_foreign_keys(sqlite_database: Database) -> None:
    # Two connections at once, so the pool has to open a second one and configure it too.
    with sqlite_database.engine.connect() as first, sqlite_database.engine.connect() as second:
        for connection in (first, second):
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 5000


def test_postgres_urls_use_psycopg() -> None:
    database = Database("postgresql://llero@127.0.0.1:5432/llero")

    assert database.url.startswith("postgresql+psycopg://")
    database.dispose()


def _count(database: Database, model: type[Category] | type[Tool]) -> int:
    with database.reader() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_foreign_keys_enforced(database: Database) -> None:
    with pytest.raises(exc.IntegrityError), database.transaction() as session:
        session.add(Tool(name="orphan", category_id=999_999))

    assert _count(database, Tool) == 0


def _write_two_then_fail(database: Database) -> None:
    with database.transaction() as session:
        session.add(Category(name="first"))
        session.flush()
        session.add(Category(name="second"))
        raise RuntimeError("fail after writing")


def _write_duplicate(database: Database) -> None:
    with database.transaction() as session:
        session.add(Category(name="twin"))
        session.flush()
        session.add(Category(name="twin"))


def test_failed_transaction_keeps_nothing(database: Database) -> None:
    with pytest.raises(RuntimeError):
        _write_two_then_fail(database)

    assert _count(database, Category) == 0


def test_unique_violation_keeps_nothing(database: Database) -> None:
    with pytest.raises(exc.IntegrityError):
        _write_duplicate(database)

    assert _count(database, Category) == 0


def test_timestamps_stored_and_read_as_utc(database: Database) -> None:
    created = datetime(2030, 5, 17, 14, 30, tzinfo=timezone(timedelta(hours=5)))
    with database.transaction() as session:
        session.add(Category(name="dated", created_at=created))

    with database.reader() as session:
        stored = session.scalars(select(Category.created_at)).one()

    assert stored == created
    assert stored.utcoffset() == timedelta(0)
    assert stored.hour == 9


def test_naive_timestamp_rejected(database: Database) -> None:
    naive = datetime(2030, 5, 17, 14, 30)

    with (
        pytest.raises(exc.StatementError, match="naive datetimes are not stored"),
        database.transaction() as session,
    ):
        session.add(Category(name="naive", created_at=naive))

    assert _count(database, Category) == 0


def test_default_timestamps_are_utc(database: Database) -> None:
    before = datetime.now(UTC)
    with database.transaction() as session:
        session.add(Category(name="now"))

    with database.reader() as session:
        stored = session.scalars(select(Category.created_at)).one()

    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stored <= datetime.now(UTC) + timedelta(seconds=1)


def _fill(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE filler (value TEXT)"))
        connection.execute(
            text("INSERT INTO filler (value) VALUES (:value)"),
            [{"value": "x" * 1000} for _ in range(200)],
        )


@pytest.mark.parametrize("background", [True, False], ids=["thread", "no-thread"])
def test_server_database_checkpoints_in_background(tmp_path: Path, background: bool) -> None:
    path = tmp_path / "server.db"
    database = Database(f"sqlite:///{path}", background_checkpoints=True)
    try:
        with database.engine.connect() as connection:
            # Commits never checkpoint; only the thread does.
            assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
        if not background:
            database._checkpoints.stop()  # type: ignore[union-attr]
        before = path.stat().st_size
        _fill(database)
        time.sleep(CHECKPOINT_SECONDS * 2)
        copied = path.stat().st_size - before
    finally:
        database.dispose()
    # 200 rows of 1000 bytes reach the database file only through a checkpoint.
    assert (copied > 150_000) is background
