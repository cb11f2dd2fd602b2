"""Prepared statements store and return what SQLAlchemy's execute would, and raise its errors."""

import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import pytest
from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from llero.forge.models import Category
from llero.incident.models import STATE_ROW_ID, SystemState
from llero.storage.db import Database
from llero.storage.prepared import PreparedRead, PreparedStatement

STATE_QUERY = select(
    SystemState.id,
    SystemState.tokens_not_before,
    SystemState.lockdown,
    SystemState.lockdown_reason,
    SystemState.tokens_not_before.is_(None).label("never_revoked"),
).where(SystemState.id == bindparam("state_id"), SystemState.lockdown_reason != bindparam("not"))


def _store_state(database: Database, not_before: datetime | None, lockdown: bool) -> None:
    with database.transaction() as session:
        session.merge(
            SystemState(
                id=STATE_ROW_ID,
                tokens_not_before=not_before,
                lockdown=lockdown,
                lockdown_reason="drill",
            )
        )


def _through_sqlalchemy(database: Database, state_id: int) -> tuple[object, ...] | None:
    with database.engine.connect() as connection:
        row = connection.execute(STATE_QUERY, {"state_id": state_id, "not": "x"}).first()
    return None if row is None else tuple(row)


def test_types_match_sqlalchemy(database: Database) -> None:
    revoked_at = datetime(2026, 12, 5, 2, 7, 30, 123456, tzinfo=UTC)
    _store_state(database, revoked_at, lockdown=True)
    read = PreparedRead(database, STATE_QUERY)

    row = read.first({"state_id": STATE_ROW_ID, "not": "x"})

    assert row == (STATE_ROW_ID, revoked_at, True, "drill", False)
    assert row == _through_sqlalchemy(database, STATE_ROW_ID)
    assert row is not None
    assert row[1].tzinfo is not None
    assert type(row[2]) is bool


def test_reads_nulls_and_false(database: Database) -> None:
    _store_state(database, None, lockdown=False)

    row = PreparedRead(database, STATE_QUERY).first({"state_id": STATE_ROW_ID, "not": "x"})

    assert row == (STATE_ROW_ID, None, False, "drill", True)
    assert row == _through_sqlalchemy(database, STATE_ROW_ID)


def test_no_matching_row_is_none(database: Database) -> None:
    _store_state(database, None, lockdown=False)
    read = PreparedRead(database, STATE_QUERY)

    assert read.first({"state_id": STATE_ROW_ID + 1, "not": "x"}) is None
    assert read.first({"state_id": STATE_ROW_ID, "not": "drill"}) is None


def test_connections_return_to_pool(database: Database) -> None:
    _store_state(database, None, lockdown=False)
    read = PreparedRead(database, STATE_QUERY)
    checked_out = database.engine.pool.checkedout()  # type: ignore[attr-defined]

    for _ in range(100):
        read.first({"state_id": STATE_ROW_ID, "not": "x"})

    assert database.engine.pool.checkedout() == checked_out  # type: ignore[attr-defined]


def test_read_sees_each_later_commit(database: Database) -> None:
    read = PreparedRead(database, STATE_QUERY)
    revoked_at = datetime(2026, 12, 5, 14, 0, tzinfo=UTC)

    _store_state(database, None, lockdown=False)
    before = read.first({"state_id": STATE_ROW_ID, "not": "x"})
    _store_state(database, revoked_at, lockdown=True)
    after = read.first({"state_id": STATE_ROW_ID, "not": "x"})

    assert before == (STATE_ROW_ID, None, False, "drill", True)
    assert after == (STATE_ROW_ID, revoked_at, True, "drill", False)


def test_sqlite_thread_keeps_one_reader(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("only SQLite connections are kept per thread")
    _store_state(database, None, lockdown=False)
    read = PreparedRead(database, STATE_QUERY)
    read.first({"state_id": STATE_ROW_ID, "not": "x"})
    mine = database.reader_connection()
    others: list[object] = []

    for _ in range(10):
        read.first({"state_id": STATE_ROW_ID, "not": "x"})
    thread = threading.Thread(target=lambda: others.append(database.reader_connection()))
    thread.start()
    thread.join()

    assert database.reader_connection() is mine
    assert not mine.in_transaction
    assert others[0] is not mine


# PreparedStatement runs on the caller's connection, inside its transaction.

categories = cast(Table, Category.__table__)
INSERT_CATEGORY = PreparedStatement(
    insert(categories).returning(categories.c.id),
    ["name", "description", "created_at"],
)
RENAME_FIRST = PreparedStatement(
    update(categories).where(categories.c.id == bindparam("category_id")).values(name="renamed")
)
CATEGORIES_SINCE = PreparedStatement(
    select(categories.c.name, categories.c.created_at)
    .where(categories.c.created_at >= bindparam("since"))
    .order_by(categories.c.id)
)


def _add_category(database: Database, name: str, created_at: datetime) -> int:
    with database.transaction() as session:
        rows = INSERT_CATEGORY.execute(
            session.connection(), {"name": name, "description": "", "created_at": created_at}
        )
    return int(rows[0][0])


def test_insert_stores_what_sqlalchemy_stores(database: Database) -> None:
    # A time in another zone is stored in UTC by the column type's bind processor.
    created_at = datetime(2026, 12, 5, 4, 7, 30, 123456, tzinfo=timezone(timedelta(hours=2)))

    prepared_id = _add_category(database, "prepared", created_at)
    with database.transaction() as session:
        session.add(Category(name="orm", created_at=created_at))

    with database.engine.connect() as connection:
        stored = dict(connection.execute(text("SELECT name, created_at FROM categories")).all())
    assert stored["prepared"] == stored["orm"]
    with database.reader() as session:
        read_back = session.get(Category, prepared_id)
    assert read_back is not None
    assert read_back.created_at == created_at
    assert read_back.created_at.utcoffset() == timedelta(0)


def test_select_converts_like_sqlalchemy(database: Database) -> None:
    first = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
    _add_category(database, "old", first - timedelta(days=1))
    _add_category(database, "new", first)

    with database.reader() as session:
        rows = CATEGORIES_SINCE.execute(session.connection(), {"since": first})
        expected = session.execute(
            select(Category.name, Category.created_at).where(Category.created_at >= first)
        ).all()

    assert rows == [("new", first)]
    assert rows == [tuple(row) for row in expected]


def test_statement_without_rows_returns_empty(database: Database) -> None:
    category_id = _add_category(database, "before", datetime.now(UTC))

    with database.transaction() as session:
        assert RENAME_FIRST.execute(session.connection(), {"category_id": category_id}) == []

    with database.reader() as session:
        assert session.scalar(select(Category.name)) == "renamed"


def test_statement_rolls_back_with_transaction(database: Database) -> None:
    def failing_action() -> None:
        with database.transaction() as session:
            INSERT_CATEGORY.execute(
                session.connection(),
                {"name": "dropped", "description": "", "created_at": datetime.now(UTC)},
            )
            raise RuntimeError("action failed")

    with pytest.raises(RuntimeError, match="action failed"):
        failing_action()

    with database.reader() as session:
        assert session.scalar(select(Category.id)) is None


def test_driver_error_is_sqlalchemy_error(database: Database) -> None:
    _add_category(database, "taken", datetime.now(UTC))

    with pytest.raises(IntegrityError) as raised, database.transaction() as session:
        INSERT_CATEGORY.execute(
            session.connection(),
            {"name": "taken", "description": "private-note", "created_at": datetime.now(UTC)},
        )

    assert raised.value.orig is not None
    # The parameters, which can be personal data, are left out of the message.
    assert "private-note" not in str(raised.value)


def test_one_statement_serves_two_engines(database: Database) -> None:
    # Statements are compiled per dialect, so a second engine on the same database reuses or
    # compiles its own without mixing them up.
    other = Database(database.url)
    try:
        with other.transaction() as session:
            INSERT_CATEGORY.execute(
                session.connection(),
                {"name": "second", "description": "", "created_at": datetime.now(UTC)},
            )
    finally:
        other.dispose()
    _add_category(database, "first", datetime.now(UTC))

    with database.reader() as session:
        assert sorted(session.scalars(select(Category.name))) == ["first", "second"]
