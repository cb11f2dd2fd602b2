"""Audit records can be found by time, actor, event and target, page by page, and exported."""

import json
from datetime import datetime, timedelta

import pytest

from llero.audit import service
from llero.audit.events import ActorKind, AuditEvent
from llero.audit.keys import AuditKeys
from llero.audit.service import AuditFilter, export_jsonl, query, record
from llero.errors import InvalidInput
from llero.storage.db import Database
from tests.audit.helpers import EVENTS, REQUEST, START, audited


@pytest.fixture
def stored(database: Database, audit_keys: AuditKeys, monkeypatch: pytest.MonkeyPatch) -> Database:
    hours = iter(range(len(EVENTS)))
    monkeypatch.setattr(service, "utc_now", lambda: START + timedelta(hours=next(hours)))
    with audited(database, audit_keys) as session:
        for event, actor, target in EVENTS:
            record(session, event, actor=actor, target=target, request=REQUEST)
    monkeypatch.undo()
    return database


def _sequences(
    database: Database, keys: AuditKeys, filters: AuditFilter, **options: object
) -> list[int]:
    with audited(database, keys) as session:
        page = query(session, filters, **options)  # type: ignore[arg-type]
    return [found.sequence for found in page.records]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (AuditFilter(), [6, 5, 4, 3, 2, 1]),
        (AuditFilter(since=START + timedelta(hours=2)), [6, 5, 4, 3]),
        (AuditFilter(until=START + timedelta(hours=2)), [2, 1]),
        (
            AuditFilter(since=START + timedelta(hours=1), until=START + timedelta(hours=3)),
            [3, 2],
        ),
        (AuditFilter(events=(AuditEvent.TOOL_CREATED, AuditEvent.TOOL_DELETED)), [5, 2]),
        (AuditFilter(actor_kind=ActorKind.USER), [5, 3, 2, 1]),
        (AuditFilter(actor_kind=ActorKind.USER, actor_id="2"), [5, 3]),
        (AuditFilter(actor_kind=ActorKind.SYSTEM), [4]),
        (AuditFilter(target_kind="tool"), [5, 3, 2]),
        (AuditFilter(target_kind="tool", target_id="10"), [3, 2]),
        (AuditFilter(events=(AuditEvent.TOOL_UPDATED,), actor_id="1"), []),
    ],
)
def test_query_filters(
    stored: Database, audit_keys: AuditKeys, filters: AuditFilter, expected: list[int]
) -> None:
    assert _sequences(stored, audit_keys, filters) == expected


def test_query_oldest_first(stored: Database, audit_keys: AuditKeys) -> None:
    assert _sequences(stored, audit_keys, AuditFilter(), newest_first=False) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("newest_first", [True, False])
def test_query_pages_cover_all(stored: Database, audit_keys: AuditKeys, newest_first: bool) -> None:
    seen: list[int] = []
    cursor = None
    with audited(stored, audit_keys) as session:
        while True:
            page = query(session, after=cursor, limit=4, newest_first=newest_first)
            seen.extend(found.sequence for found in page.records)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor

    assert sorted(seen) == [1, 2, 3, 4, 5, 6]
    assert len(seen) == 6
    assert seen == sorted(seen, reverse=newest_first)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_query_limit_bounded(stored: Database, audit_keys: AuditKeys, limit: int) -> None:
    with audited(stored, audit_keys) as session, pytest.raises(InvalidInput) as raised:
        query(session, limit=limit)

    assert raised.value.details[0].field == "limit"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"since": datetime(2026, 1, 1)}, "since"),
        ({"until": datetime(2026, 1, 1)}, "until"),
        ({"detail_hash": "hmac-sha256:%"}, "detail_hash"),
        ({"detail_hash": "hmac-sha256:" + "A" * 64}, "detail_hash"),
        ({"detail_hash": "sk-live-123"}, "detail_hash"),
    ],
)
def test_invalid_filter_rejected(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        AuditFilter(**arguments)  # type: ignore[arg-type]

    assert raised.value.details[0].field == field


def test_export_lines_oldest_first(stored: Database, audit_keys: AuditKeys) -> None:
    with audited(stored, audit_keys) as session:
        lines = list(export_jsonl(session, batch_size=4))

    records = [json.loads(line) for line in lines]
    assert all(line.endswith("\n") for line in lines)
    assert [item["sequence"] for item in records] == [1, 2, 3, 4, 5, 6]
    assert records[0] == {
        "sequence": 1,
        "occurred_at": "2026-03-01T00:00:00.000000+00:00",
        "event": "user:login_succeeded",
        "actor": {"kind": "user", "id": "1"},
        "target": {"kind": "user", "id": "1"},
        "client_address": "203.0.113.7",
        "request_id": "req-1",
        "user_agent": "pytest",
        "detail": {},
        "previous_hash": "0" * 64,
        "record_hash": records[1]["previous_hash"],
    }


def test_export_applies_filters(stored: Database, audit_keys: AuditKeys) -> None:
    with audited(stored, audit_keys) as session:
        lines = list(export_jsonl(session, AuditFilter(target_kind="tool"), batch_size=2))

    assert [json.loads(line)["sequence"] for line in lines] == [2, 3, 5]
