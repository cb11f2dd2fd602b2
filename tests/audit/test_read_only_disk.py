"""The audit database turning read-only in the middle of a request: the action is rolled back
and the client gets a request id only."""

from collections.abc import Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from llero.audit import service
from llero.storage.db import Database
from llero.storage.prepared import PreparedStatement


class ReadOnlyBeforeInsert:
    """Stands in for the audit insert: turns the SQLite connection read-only just before it.

    SQLite's query_only pragma refuses every later write on the connection, as a disk remounted
    read-only would, after the action's own rows were written in the same transaction.
    """

    def __init__(self, insert: PreparedStatement) -> None:
        self.insert = insert
        self.calls = 0

    def execute(
        self, connection: Connection, parameters: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        self.calls += 1
        driver = connection.connection.dbapi_connection
        assert driver is not None
        driver.execute("PRAGMA query_only = ON")
        try:
            return self.insert.execute(connection, parameters)
        finally:
            driver.execute("PRAGMA query_only = OFF")


@pytest.fixture
def read_only_audit(database: Database, monkeypatch: pytest.MonkeyPatch) -> ReadOnlyBeforeInsert:
    if not database.url.startswith("sqlite"):
        pytest.skip("the query_only pragma is SQLite's")
    stand_in = ReadOnlyBeforeInsert(service._INSERT)
    monkeypatch.setattr(service, "_INSERT", stand_in)
    return stand_in


def test_read_only_audit_rolls_action_back(
    client: TestClient, read_only_audit: ReadOnlyBeforeInsert, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.post("/api/categories", json={"name": "weather"})

    assert read_only_audit.calls == 1
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert "readonly" not in response.text
    assert "request_failed" in caplog.text
    listed = client.get("/api/categories")
    assert listed.status_code == 200
    assert "weather" not in listed.text
