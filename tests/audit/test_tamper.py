"""verify_chain finds the first record that was edited, deleted, inserted or reordered by
someone who can write to the database but does not hold the audit key."""

import secrets

import pytest

from llero.audit.chain import GENESIS_HASH
from llero.audit.keys import AuditKeys
from llero.audit.service import BreakReason, VerifyResult, verify_chain
from llero.storage.db import Database
from tests.audit.helpers import append, audited, execute_raw, scalar_raw

COUNT = 8


@pytest.fixture
def chain(database: Database, audit_keys: AuditKeys) -> Database:
    assert append(database, audit_keys, COUNT) == list(range(1, COUNT + 1))
    return database


def _verify(
    database: Database, keys: AuditKeys, start: int | None = None, end: int | None = None
) -> VerifyResult:
    with audited(database, keys) as session:
        return verify_chain(session, start, end)


def _record_hash(database: Database, sequence: int) -> str:
    return str(
        scalar_raw(database, "SELECT record_hash FROM audit_events WHERE sequence = :s", s=sequence)
    )


def _insert_forged(database: Database, sequence: int, previous_hash: str) -> None:
    execute_raw(
        database,
        "INSERT INTO audit_events (sequence, occurred_at, event, actor_kind, actor_id, detail, "
        "previous_hash, record_hash) VALUES (:s, :t, 'user:login_succeeded', 'user', '1', '{}', "
        ":p, :h)",
        s=sequence,
        t="2026-01-01 00:00:00.000000",
        p=previous_hash,
        h=secrets.token_hex(32),
    )


def test_untouched_chain_verifies(chain: Database, audit_keys: AuditKeys) -> None:
    result = _verify(chain, audit_keys)

    assert result.ok
    assert result.checked == COUNT
    assert (result.first_sequence, result.last_sequence) == (1, COUNT)


def test_empty_chain_verifies(database: Database, audit_keys: AuditKeys) -> None:
    result = _verify(database, audit_keys)

    assert result.ok
    assert result.checked == 0


def test_edited_detail_detected(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "UPDATE audit_events SET detail = :d WHERE sequence = 5", d='{"index":99}')

    result = _verify(chain, audit_keys)

    assert not result.ok
    assert result.broken is not None
    assert result.broken.sequence == 5
    assert result.broken.reason is BreakReason.EDITED


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("event", "user:logout"),
        ("actor_id", "1"),
        ("client_address", "198.51.100.1"),
        ("request_id", "req-2"),
        ("occurred_at", "2020-01-01 00:00:00.000000"),
        ("previous_hash", "f" * 64),
    ],
)
def test_edited_field_detected(
    chain: Database, audit_keys: AuditKeys, column: str, value: str
) -> None:
    execute_raw(chain, f"UPDATE audit_events SET {column} = :v WHERE sequence = 3", v=value)  # noqa: S608 - column names come from the parameter list above

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence == 3
    assert result.broken.reason is BreakReason.EDITED


def test_deleted_middle_record_detected(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "DELETE FROM audit_events WHERE sequence = 4")

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence == 4
    assert result.broken.reason is BreakReason.DELETED
    assert result.broken.message == "record 4 is missing; the next stored record is 5"


def test_deleted_tail_detected(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "DELETE FROM audit_events WHERE sequence >= 7")

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence == 7
    assert result.broken.reason is BreakReason.DELETED


def test_deleted_first_record_detected(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "DELETE FROM audit_events WHERE sequence = 1")

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence == 1
    assert result.broken.reason is BreakReason.DELETED


def test_forged_record_appended_detected(chain: Database, audit_keys: AuditKeys) -> None:
    _insert_forged(chain, COUNT + 1, _record_hash(chain, COUNT))

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence == COUNT + 1
    assert result.broken.reason is BreakReason.INSERTED


def test_forged_record_inserted_mid_chain_detected(chain: Database, audit_keys: AuditKeys) -> None:
    # Make room at 4 the only way a primary key allows, by renumbering the later records.
    execute_raw(chain, "UPDATE audit_events SET sequence = sequence + 1000 WHERE sequence >= 4")
    execute_raw(chain, "UPDATE audit_events SET sequence = sequence - 999 WHERE sequence > 1000")
    _insert_forged(chain, 4, _record_hash(chain, 3))

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence == 4
    assert result.broken.reason is BreakReason.INSERTED


def test_forged_record_with_random_link_detected(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "UPDATE audit_events SET sequence = sequence + 1000 WHERE sequence >= 2")
    execute_raw(chain, "UPDATE audit_events SET sequence = sequence - 999 WHERE sequence > 1000")
    _insert_forged(chain, 2, secrets.token_hex(32))

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence == 2
    assert result.broken.reason is BreakReason.INSERTED


@pytest.mark.parametrize(("first", "second"), [(3, 6), (4, 5), (1, COUNT)])
def test_swapped_records_detected(
    chain: Database, audit_keys: AuditKeys, first: int, second: int
) -> None:
    execute_raw(chain, "UPDATE audit_events SET sequence = -1 WHERE sequence = :a", a=first)
    execute_raw(
        chain, "UPDATE audit_events SET sequence = :a WHERE sequence = :b", a=first, b=second
    )
    execute_raw(chain, "UPDATE audit_events SET sequence = :b WHERE sequence = -1", b=second)

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence == first
    assert result.broken.reason is BreakReason.REORDERED


def test_first_broken_record_reported(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "UPDATE audit_events SET detail = '{}' WHERE sequence IN (3, 6)")
    execute_raw(chain, "DELETE FROM audit_events WHERE sequence = 7")

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence == 3


def test_batches_walk_whole_chain(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "UPDATE audit_events SET detail = '{}' WHERE sequence = 7")

    with audited(chain, audit_keys) as session:
        result = verify_chain(session, batch_size=2)

    assert result.broken is not None
    assert result.broken.sequence == 7


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_chain SET last_sequence = 6",
        "UPDATE audit_chain SET last_hash = :h",
        "UPDATE audit_chain SET first_sequence = 2",
        "UPDATE audit_chain SET anchor_hash = :h",
        "UPDATE audit_chain SET mac = :h",
    ],
)
def test_edited_chain_head_detected(chain: Database, audit_keys: AuditKeys, statement: str) -> None:
    execute_raw(chain, statement, h=secrets.token_hex(32))

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.sequence is None
    assert result.broken.reason is BreakReason.HEAD_INVALID


def test_deleted_chain_head_detected(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "DELETE FROM audit_chain")

    result = _verify(chain, audit_keys)

    assert result.broken is not None
    assert result.broken.reason is BreakReason.HEAD_INVALID


def test_chain_under_other_key_fails(chain: Database) -> None:
    result = _verify(chain, AuditKeys.from_material(secrets.token_bytes(32)))

    assert result.broken is not None
    assert result.broken.reason is BreakReason.HEAD_INVALID


def test_range_checks_only_its_records(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "UPDATE audit_events SET detail = '{}' WHERE sequence = 2")

    inside = _verify(chain, audit_keys, 4, 6)
    covering = _verify(chain, audit_keys, 1, 3)

    assert inside.ok
    assert (inside.checked, inside.first_sequence, inside.last_sequence) == (3, 4, 6)
    assert covering.broken is not None
    assert covering.broken.sequence == 2


def test_range_start_after_deleted_record_detected(chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(chain, "DELETE FROM audit_events WHERE sequence = 4")

    result = _verify(chain, audit_keys, 5, 6)

    assert result.broken is not None
    assert result.broken.sequence == 4
    assert result.broken.reason is BreakReason.DELETED


def test_genesis_hash_starts_chain(chain: Database) -> None:
    first_previous = scalar_raw(chain, "SELECT previous_hash FROM audit_events WHERE sequence = 1")

    assert first_previous == GENESIS_HASH
