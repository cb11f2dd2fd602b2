"""The hashed form of a record does not depend on how the database returned its time."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from llero.audit.chain import HASHED_FIELDS, ChainHasher, format_time
from llero.audit.keys import AuditKeys

MOMENT = datetime(2026, 1, 31, 23, 59, 59, 120000, tzinfo=UTC)
CANONICAL = "2026-01-31T23:59:59.120000+00:00"


@pytest.mark.parametrize(
    "moment",
    [
        MOMENT,
        MOMENT.replace(tzinfo=None),
        MOMENT.astimezone(timezone(timedelta(hours=5, minutes=30))),
        "2026-01-31 23:59:59.120000",
        "2026-01-31T23:59:59.12+00:00",
        "2026-02-01T01:59:59.120000+02:00",
    ],
)
def test_time_formats_alike(moment: datetime | str) -> None:
    assert format_time(moment) == CANONICAL


def test_whole_second_keeps_microseconds() -> None:
    assert format_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000000+00:00"


def test_time_text_not_a_time_rejected() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        format_time("yesterday")


def _fields(**changes: object) -> list[object]:
    values: dict[str, object] = {
        "sequence": 1,
        "occurred_at": MOMENT,
        "event": "tool:created",
        "actor_kind": "user",
        "actor_id": "1",
        "target_kind": "tool",
        "target_id": "2",
        "client_address": None,
        "request_id": None,
        "user_agent": None,
        "detail": "{}",
        "previous_hash": "0" * 64,
    }
    values.update(changes)
    return [values[name] for name in HASHED_FIELDS]


def test_record_hash_covers_every_field(audit_keys: AuditKeys) -> None:
    hasher = ChainHasher(audit_keys)
    original = hasher.record_hash(_fields())
    changed = {
        "sequence": 2,
        "occurred_at": MOMENT + timedelta(microseconds=1),
        "event": "tool:deleted",
        "actor_kind": "agent",
        "actor_id": "2",
        "target_kind": "agent",
        "target_id": "3",
        "client_address": "203.0.113.1",
        "request_id": "r",
        "user_agent": "u",
        "detail": '{"a":1}',
        "previous_hash": "1" * 64,
    }

    assert set(changed) == set(HASHED_FIELDS)
    for name, value in changed.items():
        assert hasher.record_hash(_fields(**{name: value})) != original, name


def test_fields_cannot_borrow_from_neighbours(audit_keys: AuditKeys) -> None:
    hasher = ChainHasher(audit_keys)

    assert hasher.record_hash(_fields(actor_id="1", target_kind="tool")) != hasher.record_hash(
        _fields(actor_id="1t", target_kind="ool")
    )


def test_none_differs_from_text_null(audit_keys: AuditKeys) -> None:
    hasher = ChainHasher(audit_keys)

    assert hasher.record_hash(_fields(user_agent=None)) != hasher.record_hash(
        _fields(user_agent="null")
    )


def test_head_mac_differs_from_record_hash(audit_keys: AuditKeys) -> None:
    hasher = ChainHasher(audit_keys)

    assert hasher.head_mac(1, "0" * 64, 0, "0" * 64) != hasher.head_mac(1, "0" * 64, 1, "0" * 64)


def test_kept_hasher_follows_the_keys() -> None:
    first = AuditKeys.from_material(b"\x01" * 32)
    second = AuditKeys.from_material(b"\x02" * 32)
    head = (1, "0" * 64, 0, "0" * 64)

    mac_first = ChainHasher.of(first).head_mac(*head)
    mac_second = ChainHasher.of(second).head_mac(*head)

    assert mac_first == ChainHasher(first).head_mac(*head)
    assert mac_second == ChainHasher(second).head_mac(*head)
    assert mac_first != mac_second
    assert ChainHasher.of(first).head_mac(*head) == mac_first
    assert ChainHasher.of(first) is ChainHasher.of(first)
