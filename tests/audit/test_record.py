"""record() writes one chained row inside the caller's transaction and fails closed."""

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from llero.audit import redaction
from llero.audit.chain import AuditChainError
from llero.audit.context import Actor, RequestContext, Target
from llero.audit.events import AuditEvent
from llero.audit.keys import AuditKeys, AuditKeysMissing, attach_keys
from llero.audit.models import AuditRecord
from llero.audit.redaction import InvalidAuditDetail
from llero.audit.service import record, verify_chain
from llero.forge.models import Category
from llero.storage.db import Database
from tests.audit.helpers import REQUEST, append, audited, execute_raw, scalar_raw


def _category_names(database: Database) -> list[str]:
    with database.reader() as session:
        return list(session.scalars(select(Category.name)))


def _record_change(session_keys: AuditKeys | None, database: Database, **overrides: object) -> None:
    """Create a category and audit it in one transaction, as a Forge route will."""
    with database.transaction() as session:
        if session_keys is not None:
            attach_keys(session, session_keys)
        session.add(Category(name="audited"))
        session.flush()
        arguments: dict[str, object] = {
            "actor": Actor.user(7),
            "target": Target.of("category", 1),
            "request": REQUEST,
            "detail": {"name": "audited"},
        }
        arguments.update(overrides)
        record(session, AuditEvent.CATEGORY_CREATED, **arguments)  # type: ignore[arg-type]


def test_record_stores_every_field(database: Database, audit_keys: AuditKeys) -> None:
    before = datetime.now(UTC)
    with audited(database, audit_keys) as session:
        sequence = record(
            session,
            AuditEvent.USER_LOGIN_FAILED,
            actor=Actor.system("sign-in"),
            target=Target.of("user", 42),
            request=RequestContext("::ffff:198.51.100.9", "abc123", "Mozilla/5.0"),
            detail={"reason": "bad_password", "attempt": 3},
        )

    with database.reader() as session:
        stored = session.get(AuditRecord, sequence)
    assert stored is not None
    assert stored.event == "user:login_failed"
    assert (stored.actor_kind, stored.actor_id) == ("system", "sign-in")
    assert (stored.target_kind, stored.target_id) == ("user", "42")
    assert stored.client_address == "198.51.100.9"
    assert stored.request_id == "abc123"
    assert stored.user_agent == "Mozilla/5.0"
    assert stored.detail == '{"attempt":3,"reason":"bad_password"}'
    assert before <= stored.occurred_at <= datetime.now(UTC)
    assert stored.occurred_at.tzinfo is not None
    assert len(stored.record_hash) == 64


def test_record_without_request_or_target(database: Database, audit_keys: AuditKeys) -> None:
    with audited(database, audit_keys) as session:
        sequence = record(
            session, AuditEvent.BACKUP_CREATED, actor=Actor.system(), target=None, request=None
        )

    with database.reader() as session:
        stored = session.get(AuditRecord, sequence)
    assert stored is not None
    assert (stored.target_kind, stored.client_address, stored.detail) == (None, None, "{}")


def test_sequences_rise_by_one(database: Database, audit_keys: AuditKeys) -> None:
    assert append(database, audit_keys, 5) == [1, 2, 3, 4, 5]


def test_many_records_in_one_transaction_verify(database: Database, audit_keys: AuditKeys) -> None:
    with audited(database, audit_keys) as session:
        sequences = [
            record(
                session, AuditEvent.TOOL_IMPORTED, actor=Actor.user(1), target=None, request=None
            )
            for _ in range(20)
        ]
        result = verify_chain(session)

    assert sequences == list(range(1, 21))
    assert result.ok
    assert result.checked == 20


def test_unknown_event_name_rejected(database: Database, audit_keys: AuditKeys) -> None:
    with pytest.raises(ValueError, match="tool:exploded"), audited(database, audit_keys) as session:
        record(session, "tool:exploded", actor=Actor.user(1), target=None, request=None)  # type: ignore[arg-type]


def test_rolled_back_action_leaves_no_record(database: Database, audit_keys: AuditKeys) -> None:
    def failing_action() -> None:
        with audited(database, audit_keys) as session:
            record(session, AuditEvent.TOOL_DELETED, actor=Actor.user(1), target=None, request=None)
            raise RuntimeError("action failed")

    with pytest.raises(RuntimeError, match="action failed"):
        failing_action()

    assert scalar_raw(database, "SELECT count(*) FROM audit_events") == 0
    assert append(database, audit_keys, 1) == [1]


# Fail closed: when the audit row cannot be written, the action it describes is rolled back.


def test_dropped_table_rolls_action_back(database: Database, audit_keys: AuditKeys) -> None:
    def action_with_table_gone() -> None:
        with database.transaction() as session:
            attach_keys(session, audit_keys)
            session.add(Category(name="audited"))
            session.flush()
            session.execute(text("DROP TABLE audit_events"))
            record(
                session, AuditEvent.CATEGORY_CREATED, actor=Actor.user(7), target=None, request=None
            )

    with pytest.raises(DBAPIError):
        action_with_table_gone()

    assert _category_names(database) == []
    assert "audit_events" in inspect(database.engine).get_table_names()


def test_check_constraint_violation_rolls_action_back(
    database: Database, audit_keys: AuditKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Switch off the service's own size check, so the database's CHECK is what refuses.
    monkeypatch.setattr(redaction, "DETAIL_MAX_BYTES", 1_000_000)

    with pytest.raises(IntegrityError):
        _record_change(audit_keys, database, detail={"notes": "x" * 5000})

    assert _category_names(database) == []
    assert scalar_raw(database, "SELECT count(*) FROM audit_events") == 0


def test_oversized_detail_rolls_action_back(database: Database, audit_keys: AuditKeys) -> None:
    with pytest.raises(InvalidAuditDetail, match="the limit is 4096"):
        _record_change(audit_keys, database, detail={"notes": "x" * 5000})

    assert _category_names(database) == []


def test_missing_keys_roll_action_back(database: Database) -> None:
    # A fresh engine: an app made by an earlier test gave the shared one's sessions its keys.
    without_keys = Database(database.url)
    try:
        with pytest.raises(AuditKeysMissing):
            _record_change(None, without_keys)
    finally:
        without_keys.dispose()

    assert _category_names(database) == []


def test_tampered_head_stops_recording(database: Database, audit_keys: AuditKeys) -> None:
    append(database, audit_keys, 3)
    # Truncating the tail and moving the head back would hide the deletion, unless the next
    # append refuses to sign over the edited head.
    execute_raw(database, "DELETE FROM audit_events WHERE sequence = 3")
    execute_raw(database, "UPDATE audit_chain SET last_sequence = 2")

    with pytest.raises(AuditChainError, match="fails its check"):
        _record_change(audit_keys, database)

    assert _category_names(database) == []
    assert scalar_raw(database, "SELECT count(*) FROM audit_events") == 2


def test_deleted_head_with_records_stops_recording(
    database: Database, audit_keys: AuditKeys
) -> None:
    append(database, audit_keys, 2)
    execute_raw(database, "DELETE FROM audit_chain")

    with pytest.raises(AuditChainError, match="head is missing"):
        _record_change(audit_keys, database)

    assert _category_names(database) == []
    assert scalar_raw(database, "SELECT count(*) FROM audit_chain") == 0


def test_other_key_stops_recording(database: Database, audit_keys: AuditKeys) -> None:
    append(database, audit_keys, 1)

    with pytest.raises(AuditChainError):
        _record_change(AuditKeys.from_material(b"\x01" * 32), database)

    assert _category_names(database) == []


@pytest.mark.parametrize("threads", [4])
def test_concurrent_appends_keep_one_chain(
    database: Database, audit_keys: AuditKeys, threads: int
) -> None:
    per_thread = 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker() -> None:
        try:
            start.wait()
            append(database, audit_keys, per_thread)
        except BaseException as error:  # noqa: BLE001 - reported to the main thread below
            errors.append(error)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)

    assert errors == []
    with audited(database, audit_keys) as session:
        result = verify_chain(session)
    assert result.ok
    assert result.checked == threads * per_thread
    assert scalar_raw(database, "SELECT max(sequence) FROM audit_events") == threads * per_thread


def test_rolled_back_savepoint_keeps_chain(database: Database, audit_keys: AuditKeys) -> None:
    with audited(database, audit_keys) as session:
        first = record(
            session, AuditEvent.TOOL_CREATED, actor=Actor.user(1), target=None, request=None
        )
        savepoint = session.begin_nested()
        record(session, AuditEvent.TOOL_UPDATED, actor=Actor.user(1), target=None, request=None)
        savepoint.rollback()
        second = record(
            session, AuditEvent.TOOL_DELETED, actor=Actor.user(1), target=None, request=None
        )

    with audited(database, audit_keys) as session:
        result = verify_chain(session)
    assert (first, second) == (1, 2)
    assert result.ok
    assert result.checked == 2


def test_released_savepoint_keeps_chain(database: Database, audit_keys: AuditKeys) -> None:
    with audited(database, audit_keys) as session:
        record(session, AuditEvent.TOOL_CREATED, actor=Actor.user(1), target=None, request=None)
        with session.begin_nested():
            inner = record(
                session, AuditEvent.TOOL_UPDATED, actor=Actor.user(1), target=None, request=None
            )
        last = record(
            session, AuditEvent.TOOL_DELETED, actor=Actor.user(1), target=None, request=None
        )

    with audited(database, audit_keys) as session:
        result = verify_chain(session)
    assert (inner, last) == (2, 3)
    assert result.ok


def test_session_reused_after_rollback(database: Database, audit_keys: AuditKeys) -> None:
    with database.sessions() as session:
        attach_keys(session, audit_keys)
        record(session, AuditEvent.TOOL_CREATED, actor=Actor.user(1), target=None, request=None)
        session.rollback()
        append(database, audit_keys, 2)
        sequence = record(
            session, AuditEvent.TOOL_CREATED, actor=Actor.user(1), target=None, request=None
        )
        session.commit()

    with audited(database, audit_keys) as session:
        assert verify_chain(session).ok
    assert sequence == 3


def test_next_immediate_transaction_reads_head_again(
    database: Database, audit_keys: AuditKeys
) -> None:
    if not database.is_sqlite:
        pytest.skip("transactions that never wait for the write lock are SQLite's")
    with database.transaction_without_waiting() as session:
        attach_keys(session, audit_keys)
        record(session, AuditEvent.TOOL_CREATED, actor=Actor.user(1), target=None, request=None)
    # Another connection moves the head between the thread's two transactions.
    append(database, audit_keys, 2)
    with database.transaction_without_waiting() as session:
        sequence = record(
            session, AuditEvent.TOOL_CREATED, actor=Actor.user(1), target=None, request=None
        )

    with audited(database, audit_keys) as session:
        assert verify_chain(session).ok
    assert sequence == 4
