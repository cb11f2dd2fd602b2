"""Shared steps for the incident tests: reading audit records and agents."""

from typing import Any

from fastapi.testclient import TestClient

from llero.audit.events import AuditEvent
from llero.audit.service import AuditFilter, query
from llero.storage.db import Database


def audit_records(database: Database, event: AuditEvent) -> list[dict[str, Any]]:
    """Return the records of ``event``, oldest first, as plain values."""
    with database.reader() as session:
        page = query(session, AuditFilter(events=(event,)), newest_first=False)
        return [
            {
                "actor": (row.actor_kind, row.actor_id),
                "target": (row.target_kind, row.target_id),
                "detail": row.detail,
            }
            for row in page.records
        ]


def create_agent(client: TestClient, name: str = "researcher") -> dict[str, Any]:
    response = client.post(
        "/api/agents", json={"name": name, "provider": "openai", "model": "gpt-4o"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
