"""A secret passed in an event detail never reaches the database, and audit_hash finds it."""

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from llero.audit.context import Actor, Target
from llero.audit.events import AuditEvent
from llero.audit.keys import AuditKeys
from llero.audit.redaction import audit_hash
from llero.audit.service import AuditFilter, export_jsonl, query, record
from llero.storage.db import Database
from tests.audit.helpers import REQUEST, audited
from tests.conftest import database_file_bytes

TOP_LEVEL = "sk-live-PLANTED-top-7f3a9c2e1b"
NESTED = "sk-live-PLANTED-nested-4d8e0a6f"
UNDER_SECRET_PARENT = "PLANTED-under-parent-91c2"
INNOCENT_KEY = "sk-live-PLANTED-innocent-key-5e7b"


def _plant(database: Database, keys: AuditKeys) -> int:
    with audited(database, keys) as session:
        return record(
            session,
            AuditEvent.PROVIDER_CREATED,
            actor=Actor.user(1),
            target=Target.of("provider", "openai"),
            request=REQUEST,
            detail={
                "api_key": TOP_LEVEL,
                "provider": {"settings": {"connection": {"refreshToken": NESTED}}},
                "client_secret": {"value": UNDER_SECRET_PARENT, "rotated": True},
                "note": INNOCENT_KEY,
                "name": "openai",
            },
        )


def _raw_database_bytes(database: Database) -> bytes:
    """Return every byte the database holds: its file and WAL on SQLite, a dump of the table
    as text on PostgreSQL."""
    if database.engine.dialect.name == "sqlite":
        path = Path(str(make_url(database.url).database))
        # Copy the WAL into the main file too, in case a test reader only looks at one of them.
        content = database_file_bytes([path, path.with_name(path.name + "-wal")])
        assert b"audit_events" in content  # the file read is really the database
        return content
    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT e::text FROM audit_events e")).scalars().all()
        head = connection.execute(text("SELECT c::text FROM audit_chain c")).scalars().all()
    return "\n".join([*rows, *head]).encode()


def test_planted_secrets_not_stored(database: Database, audit_keys: AuditKeys) -> None:
    _plant(database, audit_keys)

    stored = _raw_database_bytes(database)

    for secret in (TOP_LEVEL, NESTED, UNDER_SECRET_PARENT, INNOCENT_KEY):
        assert secret.encode() not in stored
        assert audit_hash(secret, audit_keys).encode() in stored


@pytest.mark.parametrize("secret", [TOP_LEVEL, NESTED, UNDER_SECRET_PARENT, INNOCENT_KEY])
def test_audit_hash_finds_planted_record(
    database: Database, audit_keys: AuditKeys, secret: str
) -> None:
    sequence = _plant(database, audit_keys)
    with audited(database, audit_keys) as session:
        record(session, AuditEvent.TOOL_CREATED, actor=Actor.user(1), target=None, request=None)

    with audited(database, audit_keys) as session:
        page = query(session, AuditFilter(detail_hash=audit_hash(secret, audit_keys)))

    assert [found.sequence for found in page.records] == [sequence]


def test_redacted_detail_keeps_plain_values(database: Database, audit_keys: AuditKeys) -> None:
    sequence = _plant(database, audit_keys)

    with audited(database, audit_keys) as session:
        (stored,) = query(session).records
    detail = stored.detail_data()

    assert stored.sequence == sequence
    assert detail["name"] == "openai"
    assert detail["client_secret"] == {
        "rotated": audit_hash("true", audit_keys),
        "value": audit_hash(UNDER_SECRET_PARENT, audit_keys),
    }
    connection = detail["provider"]["settings"]["connection"]
    assert connection == {"refreshToken": audit_hash(NESTED, audit_keys)}
    assert detail["note"] == audit_hash(INNOCENT_KEY, audit_keys)


def test_export_holds_no_planted_secret(database: Database, audit_keys: AuditKeys) -> None:
    _plant(database, audit_keys)

    with audited(database, audit_keys) as session:
        exported = "".join(export_jsonl(session))

    assert "PLANTED" not in exported
    assert audit_hash(TOP_LEVEL, audit_keys) in exported


def test_detail_hash_differs_by_key(audit_keys: AuditKeys) -> None:
    other = AuditKeys.from_material(b"\x02" * 32)

    assert audit_hash(TOP_LEVEL, audit_keys) != audit_hash(TOP_LEVEL, other)
    assert audit_hash(TOP_LEVEL, audit_keys) == audit_hash(TOP_LEVEL, audit_keys)
