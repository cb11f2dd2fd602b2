"""Stored secrets and audit records for the provider and usage tests, made and read with the ORM
so these tests do not depend on the secret routes."""

import json
from typing import Any

from sqlalchemy import select

from llero.audit.models import AuditRecord
from llero.storage.db import Database
from llero.vault.models import SecretKind, StoredSecret

PROVIDERS = "/api/providers"
GPT_4O = {
    "name": "gpt-4o",
    "input_micros_per_million": 2_500_000,
    "output_micros_per_million": 10_000_000,
}


def stored_secret(database: Database, name: str, kind: SecretKind) -> int:
    """Store a secret's metadata (no value: the provider routes never read one); return its id."""
    with database.transaction() as session:
        secret = StoredSecret(name=name, kind=kind)
        session.add(secret)
        session.flush()
        return secret.id


def audit_records(database: Database, event: str) -> list[tuple[str | None, dict[str, Any]]]:
    """Return (target id, detail) of every record of ``event``, oldest first."""
    with database.reader() as session:
        rows = session.execute(
            select(AuditRecord.target_id, AuditRecord.detail)
            .where(AuditRecord.event == event)
            .order_by(AuditRecord.sequence)
        ).all()
    return [(target_id, json.loads(detail) if detail else {}) for target_id, detail in rows]
