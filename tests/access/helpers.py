"""Users and clients for the ownership tests: two developers, a viewer and an admin."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response

from llero.access.roles import Role
from llero.audit.events import AuditEvent
from llero.audit.models import AuditRecord
from llero.audit.service import AuditFilter, query
from llero.storage.db import Database
from tests.conftest import FixtureUser, MakeUser
from tests.forge.tool_helpers import tool_body

MISSING_ID = 999_999


@dataclass(frozen=True)
class Person:
    user: FixtureUser
    client: TestClient

    @property
    def id(self) -> int:
        return self.user.id


@dataclass(frozen=True)
class Cast:
    alice: Person  # a developer, the owner in most tests
    bob: Person  # another developer
    viewer: Person
    admin: Person


@pytest.fixture
def cast(app: FastAPI, make_user: MakeUser) -> Iterator[Cast]:
    users = [
        make_user(role=Role.DEVELOPER, email="alice@example.com"),
        make_user(role=Role.DEVELOPER, email="bob@example.com"),
        make_user(role=Role.VIEWER, email="viewer@example.com"),
        make_user(role=Role.ADMIN, email="admin@example.com"),
    ]
    clients = [
        TestClient(app, raise_server_exceptions=False, headers=user.headers) for user in users
    ]
    for client in clients:
        client.__enter__()
    try:
        yield Cast(*(Person(user, client) for user, client in zip(users, clients, strict=True)))
    finally:
        for client in clients:
            client.__exit__(None, None, None)


def create_tool(person: Person, name: str, **overrides: Any) -> dict[str, Any]:
    response = person.client.post("/api/tools", json=tool_body(name, **overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def create_agent(person: Person, name: str, **overrides: Any) -> dict[str, Any]:
    body = {"name": name, "provider": "openai", "model": "gpt-4o", **overrides}
    response = person.client.post("/api/agents", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def share(person: Person, path: str, **body: Any) -> Response:
    return person.client.post(f"{path}/shares", json=body)


def comparable(response: Response, object_id: int) -> tuple[int, dict[str, Any]]:
    """Return the status and body with the request id dropped and the path id made generic."""
    body = response.json()
    body.pop("request_id", None)
    text = str(body).replace(str(object_id), "{id}")
    return response.status_code, {"text": text}


def audit_records(database: Database, event: AuditEvent) -> list[AuditRecord]:
    with database.reader() as session:
        page = query(session, AuditFilter(events=(event,)), newest_first=False)
        return list(page.records)
