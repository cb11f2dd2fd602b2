"""Retention purges a prefix of the chain and leaves the rest verifiable from a checkpoint."""

from datetime import UTC, datetime, timedelta

import pytest

from llero.audit import service
from llero.audit.chain import AuditChainError
from llero.audit.context import Actor
from llero.audit.events import AuditEvent
from llero.audit.keys import AuditKeys
from llero.audit.service import BreakReason, purge_older_than, verify_chain
from llero.errors import InvalidInput
from llero.storage.db import Database
from tests.audit.helpers import append, audited, execute_raw, scalar_raw

START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 10


@pytest.fixture
def daily_chain(
    database: Database, audit_keys: AuditKeys, monkeypatch: pytest.MonkeyPatch
) -> Database:
    """Ten records, one a day from START, then the real clock again."""
    days = iter(range(DAYS))
    monkeypatch.setattr(service, "utc_now", lambda: START + timedelta(days=next(days)))
    append(database, audit_keys, DAYS)
    monkeypatch.undo()
    return database


def _purge(database: Database, keys: AuditKeys, days: int, now: datetime) -> service.PurgeResult:
    with audited(database, keys) as session:
        return purge_older_than(session, days, actor=Actor.system("retention"), now=now)


def _verify(database: Database, keys: AuditKeys) -> service.VerifyResult:
    with audited(database, keys) as session:
        return verify_chain(session)


def test_purge_removes_old_prefix(daily_chain: Database, audit_keys: AuditKeys) -> None:
    # Cutoff START + 4 days: records 1 to 4 (days 0 to 3) are older.
    result = _purge(daily_chain, audit_keys, 30, START + timedelta(days=34))

    assert result.removed == 4
    assert result.first_sequence == 5
    assert result.event_sequence == DAYS + 1
    assert scalar_raw(daily_chain, "SELECT min(sequence) FROM audit_events") == 5


def test_chain_verifies_after_purge(daily_chain: Database, audit_keys: AuditKeys) -> None:
    _purge(daily_chain, audit_keys, 30, START + timedelta(days=34))

    result = _verify(daily_chain, audit_keys)

    assert result.ok
    assert (result.checked, result.first_sequence, result.last_sequence) == (7, 5, DAYS + 1)


def test_purge_records_itself(daily_chain: Database, audit_keys: AuditKeys) -> None:
    result = _purge(daily_chain, audit_keys, 30, START + timedelta(days=34))

    with audited(daily_chain, audit_keys) as session:
        (purged,) = service.query(
            session, service.AuditFilter(events=(AuditEvent.AUDIT_PURGED,))
        ).records
    assert purged.sequence == result.event_sequence
    assert (purged.actor_kind, purged.actor_id) == ("system", "retention")
    assert purged.detail_data() == {
        "cutoff": "2025-01-05T00:00:00.000000+00:00",
        "days": 30,
        "first_sequence": 5,
        "removed": 4,
    }


def test_purge_of_everything_keeps_chain(daily_chain: Database, audit_keys: AuditKeys) -> None:
    result = _purge(daily_chain, audit_keys, 1, START + timedelta(days=400))

    assert result.removed == DAYS
    assert scalar_raw(daily_chain, "SELECT count(*) FROM audit_events") == 1
    assert _verify(daily_chain, audit_keys).ok
    assert append(daily_chain, audit_keys, 2) == [DAYS + 2, DAYS + 3]
    assert _verify(daily_chain, audit_keys).ok


def test_purge_with_nothing_old_removes_nothing(
    daily_chain: Database, audit_keys: AuditKeys
) -> None:
    result = _purge(daily_chain, audit_keys, 365, START + timedelta(days=DAYS))

    assert result.removed == 0
    assert result.first_sequence == 1
    assert _verify(daily_chain, audit_keys).ok


def test_repeated_purges_verify(daily_chain: Database, audit_keys: AuditKeys) -> None:
    _purge(daily_chain, audit_keys, 30, START + timedelta(days=32))
    second = _purge(daily_chain, audit_keys, 30, START + timedelta(days=36))

    assert second.first_sequence == 7
    assert _verify(daily_chain, audit_keys).ok


def test_deleting_first_kept_record_detected(daily_chain: Database, audit_keys: AuditKeys) -> None:
    _purge(daily_chain, audit_keys, 30, START + timedelta(days=34))
    execute_raw(daily_chain, "DELETE FROM audit_events WHERE sequence = 5")

    result = _verify(daily_chain, audit_keys)

    assert result.broken is not None
    assert (result.broken.sequence, result.broken.reason) == (5, BreakReason.DELETED)


def test_forged_checkpoint_detected(daily_chain: Database, audit_keys: AuditKeys) -> None:
    # Hiding the deletion of record 5 by moving the checkpoint needs the audit key.
    _purge(daily_chain, audit_keys, 30, START + timedelta(days=34))
    anchor = scalar_raw(daily_chain, "SELECT record_hash FROM audit_events WHERE sequence = 5")
    execute_raw(daily_chain, "DELETE FROM audit_events WHERE sequence = 5")
    execute_raw(
        daily_chain, "UPDATE audit_chain SET first_sequence = 6, anchor_hash = :a", a=anchor
    )

    result = _verify(daily_chain, audit_keys)

    assert result.broken is not None
    assert result.broken.reason is BreakReason.HEAD_INVALID


def test_restored_purged_record_detected(daily_chain: Database, audit_keys: AuditKeys) -> None:
    _purge(daily_chain, audit_keys, 30, START + timedelta(days=34))
    execute_raw(
        daily_chain,
        "INSERT INTO audit_events (sequence, occurred_at, event, actor_kind, actor_id, detail, "
        "previous_hash, record_hash) VALUES (2, '2025-01-02 00:00:00.000000', 'user:logout', "
        "'user', '1', '{}', :h, :h)",
        h="a" * 64,
    )

    result = _verify(daily_chain, audit_keys)

    assert result.broken is not None
    assert (result.broken.sequence, result.broken.reason) == (2, BreakReason.INSERTED)


def test_purge_refuses_broken_chain(daily_chain: Database, audit_keys: AuditKeys) -> None:
    execute_raw(daily_chain, "UPDATE audit_events SET detail = '{}' WHERE sequence = 2")

    with pytest.raises(AuditChainError, match="refusing to purge a broken chain"):
        _purge(daily_chain, audit_keys, 30, START + timedelta(days=34))

    assert scalar_raw(daily_chain, "SELECT count(*) FROM audit_events") == DAYS


@pytest.mark.parametrize("days", [0, -1])
def test_purge_needs_positive_days(daily_chain: Database, audit_keys: AuditKeys, days: int) -> None:
    with pytest.raises(InvalidInput, match="days must be at least 1"):
        _purge(daily_chain, audit_keys, days, START)
