"""A prepared read returns the same row, with the same Python types, as SQLAlchemy's execute."""

from datetime import UTC, datetime

from sqlalchemy import bindparam, select

from llero.incident.models import STATE_ROW_ID, SystemState
from llero.storage.db import Database
from llero.storage.prepared import PreparedRead

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
    read = PreparedRead(database.engine, STATE_QUERY)

    row = read.first({"state_id": STATE_ROW_ID, "not": "x"})

    assert row == (STATE_ROW_ID, revoked_at, True, "drill", False)
    assert row == _through_sqlalchemy(database, STATE_ROW_ID)
    assert row is not None
    assert row[1].tzinfo is not None
    assert type(row[2]) is bool


def test_reads_nulls_and_false(database: Database) -> None:
    _store_state(database, None, lockdown=False)

    row = PreparedRead(database.engine, STATE_QUERY).first({"state_id": STATE_ROW_ID, "not": "x"})

    assert row == (STATE_ROW_ID, None, False, "drill", True)
    assert row == _through_sqlalchemy(database, STATE_ROW_ID)


def test_no_matching_row_is_none(database: Database) -> None:
    _store_state(database, None, lockdown=False)
    read = PreparedRead(database.engine, STATE_QUERY)

    assert read.first({"state_id": STATE_ROW_ID + 1, "not": "x"}) is None
    assert read.first({"state_id": STATE_ROW_ID, "not": "drill"}) is None


def test_connections_return_to_pool(database: Database) -> None:
    _store_state(database, None, lockdown=False)
    read = PreparedRead(database.engine, STATE_QUERY)
    checked_out = database.engine.pool.checkedout()  # type: ignore[attr-defined]

    for _ in range(100):
        read.first({"state_id": STATE_ROW_ID, "not": "x"})

    assert database.engine.pool.checkedout() == checked_out  # type: ignore[attr-defined]
