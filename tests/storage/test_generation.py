"""The configuration generation: triggers on every watched table, and the cache that trusts them."""

from datetime import timedelta

import pytest
from sqlalchemy import text

from llero.storage.base import utc_now
from llero.storage.db import Database
from llero.storage.generation import (
    UNWATCHED,
    UNWATCHED_COLUMNS,
    GenerationCache,
    current_generation,
)
from llero.storage.registry import metadata

_ADD_HOST = text("INSERT INTO egress_entries (kind, value, created_at) VALUES ('host', :host, :t)")


def _generation(database: Database) -> int:
    with database.transaction() as session:
        value = current_generation(session)
    assert value is not None
    return value


def _trigger_names(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        if database.engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        return {row[0] for row in connection.execute(text(query))}


def test_every_table_but_the_unwatched_has_triggers(database: Database) -> None:
    names = _trigger_names(database)
    sqlite = database.engine.dialect.name == "sqlite"
    missing = []
    for table in metadata.sorted_tables:
        expected = (
            [f"config_generation_{table.name}_{event}" for event in ("insert", "update", "delete")]
            if sqlite
            else [f"config_generation_{table.name}"]
        )
        present = [name in names for name in expected]
        if table.name in UNWATCHED:
            assert not any(present), f"{table.name} is unwatched but has a trigger"
        elif not all(present):
            missing.append(table.name)
    assert missing == [], "add generation triggers for these tables in their migration"


def test_each_change_of_a_watched_table_counts(database: Database) -> None:
    start = _generation(database)
    with database.engine.begin() as connection:
        connection.execute(_ADD_HOST, {"host": "a.example", "t": utc_now()})
    inserted = _generation(database)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE egress_entries SET value = 'b.example'"))
    updated = _generation(database)
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM egress_entries"))
    deleted = _generation(database)

    assert start < inserted < updated < deleted


def test_unwatched_tables_and_columns_do_not_count(database: Database, stored_version: int) -> None:
    assert "last_used_at" in UNWATCHED_COLUMNS["secret_versions"]
    start = _generation(database)
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE secret_versions SET last_used_at = :t WHERE id = :id"),
            {"t": utc_now(), "id": stored_version},
        )
        connection.execute(text("DELETE FROM usage_records"))
    assert _generation(database) == start

    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE secret_versions SET expires_at = :t WHERE id = :id"),
            {"t": utc_now() + timedelta(days=1), "id": stored_version},
        )
    assert _generation(database) == start + 1


@pytest.fixture
def stored_version(database: Database) -> int:
    """A secret with one destroyed version, stored by plain SQL; yield the version's id."""
    now = utc_now()
    with database.engine.begin() as connection:
        secret_id = connection.execute(
            text(
                "INSERT INTO secrets (name, kind, description, current_version, created_at, "
                "updated_at) VALUES ('k', 'generic', '', 1, :t, :t) RETURNING id"
            ),
            {"t": now},
        ).scalar_one()
        version_id = connection.execute(
            text(
                "INSERT INTO secret_versions (secret_id, version, backend, hint, created_at, "
                "destroyed, destroyed_at) VALUES (:s, 1, 'builtin', '', :t, true, :t) RETURNING id"
            ),
            {"s": secret_id, "t": now},
        ).scalar_one()
    return int(version_id)


def test_cache_builds_once_per_generation(database: Database) -> None:
    cache = GenerationCache()
    builds: list[int] = []

    def get() -> int:
        with database.transaction() as session:
            return cache.get(session, "key", lambda: builds.append(1) or len(builds))

    assert get() == 1
    assert get() == 1
    with database.engine.begin() as connection:
        connection.execute(_ADD_HOST, {"host": "c.example", "t": utc_now()})
    assert get() == 2
    assert len(builds) == 2


def test_cache_without_generation_row_builds_every_time(database: Database) -> None:
    cache = GenerationCache()
    builds: list[int] = []
    with database.engine.begin() as connection:
        (value,) = connection.execute(text("SELECT value FROM config_generation")).one()
        connection.execute(text("DELETE FROM config_generation"))
    try:
        for _ in range(2):
            with database.transaction() as session:
                cache.get(session, "key", lambda: builds.append(1))
    finally:
        with database.engine.begin() as connection:
            connection.execute(
                text("INSERT INTO config_generation (id, value) VALUES (1, :v)"), {"v": value}
            )
    assert len(builds) == 2


def test_generation_read_again_per_transaction(database: Database) -> None:
    with database.sessions() as session:
        with session.begin():
            first = current_generation(session)
        with database.engine.begin() as connection:
            connection.execute(_ADD_HOST, {"host": "d.example", "t": utc_now()})
        with session.begin():
            second = current_generation(session)

    assert first is not None
    assert second == first + 1


def test_generation_read_again_per_immediate_transaction(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("transactions that never wait for the write lock are SQLite's")
    with database.transaction_without_waiting() as session:
        first = current_generation(session)
    with database.engine.begin() as connection:
        connection.execute(_ADD_HOST, {"host": "e.example", "t": utc_now()})
    with database.transaction_without_waiting() as session:
        second = current_generation(session)

    assert first is not None
    assert second == first + 1
