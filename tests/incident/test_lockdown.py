"""The lockdown: stored in the database, switched by an admin, read-only for everyone else."""

import json

import pytest
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.audit.events import AuditEvent
from llero.storage.db import Database
from tests.conftest import MakeUser
from tests.identity.helpers import bearer, password_hash, sign_in
from tests.incident.helpers import audit_records, create_agent

LOCKDOWN = "/api/incident/lockdown"
LOCKED_MESSAGE = (
    "Llero is in lockdown: only admins can make changes until an admin lifts it; "
    "reading still works"
)


def _lock(client: TestClient, reason: str = "suspected key leak") -> None:
    response = client.put(LOCKDOWN, json={"enabled": True, "reason": reason})
    assert response.status_code == 200, response.text


def test_lockdown_starts_off(client: TestClient) -> None:
    assert client.get(LOCKDOWN).json() == {"enabled": False, "reason": "", "changed_at": None}


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_lockdown_refuses_changes_by_non_admins(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser, role: Role
) -> None:
    user = make_user(role=role)
    _lock(client)

    response = anonymous_client.patch(
        "/api/users/me", json={"display_name": "Changed"}, headers=user.headers
    )

    assert response.status_code == 423
    assert response.json()["error"] == "locked_down"
    assert response.json()["message"] == LOCKED_MESSAGE
    assert anonymous_client.get("/api/users/me", headers=user.headers).json()["display_name"] != (
        "Changed"
    )


def test_lockdown_keeps_reads_open(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    developer = make_user(role=Role.DEVELOPER)
    created = anonymous_client.post(
        "/api/agents",
        json={"name": "own", "provider": "openai", "model": "gpt-4o"},
        headers=developer.headers,
    )
    assert created.status_code == 201
    _lock(client)

    response = anonymous_client.get("/api/agents", headers=developer.headers)

    assert response.status_code == 200
    assert response.json()["total"] == 1


def test_lockdown_blocks_developer_writes_to_agents(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    developer = make_user(role=Role.DEVELOPER)
    agent = create_agent(client)
    _lock(client)

    created = anonymous_client.post(
        "/api/agents",
        json={"name": "other", "provider": "openai", "model": "gpt-4o"},
        headers=developer.headers,
    )
    deleted = anonymous_client.delete(f"/api/agents/{agent['id']}", headers=developer.headers)

    assert (created.status_code, deleted.status_code) == (423, 423)
    assert client.get("/api/agents").json()["total"] == 1


def test_lockdown_blocks_api_tokens_of_non_admins(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    developer = make_user(role=Role.DEVELOPER)
    token = anonymous_client.post(
        "/api/tokens",
        json={"name": "ci", "scopes": ["agent:create", "agent:read"]},
        headers=developer.headers,
    ).json()["token"]
    _lock(client)

    created = anonymous_client.post(
        "/api/agents",
        json={"name": "other", "provider": "openai", "model": "gpt-4o"},
        headers=bearer(token),
    )

    assert created.status_code == 423
    assert anonymous_client.get("/api/agents", headers=bearer(token)).status_code == 200


def test_lockdown_leaves_admins_able_to_change(client: TestClient) -> None:
    _lock(client)

    assert create_agent(client)["name"] == "researcher"


def test_lockdown_keeps_sign_in_open(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    user = make_user(role=Role.VIEWER, mfa=False, password_hash=password_hash())
    _lock(client)

    response = sign_in(anonymous_client, user.email)

    assert response.status_code == 200


def test_lifting_lockdown_restores_changes(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    developer = make_user(role=Role.DEVELOPER)
    _lock(client)

    lifted = client.put(LOCKDOWN, json={"enabled": False})
    created = anonymous_client.post(
        "/api/agents",
        json={"name": "other", "provider": "openai", "model": "gpt-4o"},
        headers=developer.headers,
    )

    assert lifted.json()["enabled"] is False
    assert created.status_code == 201


def test_lockdown_changes_are_audited(client: TestClient, database: Database) -> None:
    admin_id = client.get("/api/users/me").json()["id"]

    _lock(client, "leaked key")
    _lock(client, "leaked key")
    client.put(LOCKDOWN, json={"enabled": False})

    records = audit_records(database, AuditEvent.SETTINGS_CHANGED)
    assert [json.loads(item["detail"]) for item in records] == [
        {"setting": "lockdown", "from": False, "to": True, "reason": "leaked key"},
        {"setting": "lockdown", "from": True, "to": False, "reason": ""},
    ]
    assert {item["actor"] for item in records} == {("user", str(admin_id))}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.enabled"),
        ({"enabled": "yes"}, "body.enabled"),
        ({"enabled": True, "reason": "x" * 201}, "body.reason"),
        ({"enabled": True, "extra": 1}, "body.extra"),
    ],
)
def test_lockdown_invalid_body_422(client: TestClient, body: dict[str, object], field: str) -> None:
    response = client.put(LOCKDOWN, json=body)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_lockdown_reason_with_control_characters_422(client: TestClient) -> None:
    response = client.put(LOCKDOWN, json={"enabled": True, "reason": "a\x1b[2Jb"})

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "reason"
    assert client.get(LOCKDOWN).json()["enabled"] is False


def test_lockdown_switch_is_admin_only(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    developer = make_user(role=Role.DEVELOPER)

    response = anonymous_client.put(LOCKDOWN, json={"enabled": True}, headers=developer.headers)

    assert response.status_code == 403
    assert client.get(LOCKDOWN).json()["enabled"] is False


def test_admin_api_token_cannot_lift_lockdown(
    client: TestClient, anonymous_client: TestClient
) -> None:
    created = client.post("/api/tokens", json={"name": "ops", "scopes": ["lockdown:update"]})

    assert created.status_code == 422
    assert created.json()["details"][0]["problem"] == (
        "lockdown:update cannot be given to an API token"
    )
