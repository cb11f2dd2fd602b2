"""Quarantine and release of agents: not runnable, grants suspended, and every step audited."""

import json

import pytest
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.audit.events import AuditEvent
from llero.barracks.quarantine import AgentQuarantined, check_may_use_secrets
from llero.errors import NotFound
from llero.storage.db import Database
from tests.conftest import MakeUser
from tests.incident.helpers import audit_records, create_agent

RELEASE = {"confirm": "release"}


def _quarantine(client: TestClient, agent_id: int, reason: str = "leaked prompt") -> dict:
    response = client.post(f"/api/agents/{agent_id}/quarantine", json={"reason": reason})
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


def test_quarantined_agent_is_not_runnable(client: TestClient) -> None:
    agent = create_agent(client)

    body = _quarantine(client, agent["id"])

    assert (body["status"], body["runnable"]) == ("quarantined", False)
    assert client.get(f"/api/agents/{agent['id']}").json()["status"] == "quarantined"


def test_quarantine_suspends_grants_until_release(client: TestClient, database: Database) -> None:
    agent = create_agent(client)
    _quarantine(client, agent["id"])

    with database.reader() as session, pytest.raises(AgentQuarantined) as raised:
        check_may_use_secrets(session, agent["id"])
    assert raised.value.code == "agent_quarantined"

    client.post(f"/api/agents/{agent['id']}/release", json=RELEASE)
    with database.reader() as session:
        check_may_use_secrets(session, agent["id"])


def test_secret_check_for_unknown_agent_is_not_found(database: Database) -> None:
    with database.reader() as session, pytest.raises(NotFound):
        check_may_use_secrets(session, 424242)


def test_release_restores_active_agent_with_toolkit(client: TestClient) -> None:
    agent = create_agent(client)
    _quarantine(client, agent["id"])

    response = client.post(f"/api/agents/{agent['id']}/release", json=RELEASE)

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["runnable"]) == ("active", True)


def test_quarantine_and_release_are_audited(client: TestClient, database: Database) -> None:
    admin_id = client.get("/api/users/me").json()["id"]
    agent = create_agent(client)

    _quarantine(client, agent["id"], "prompt injection seen")
    client.post(f"/api/agents/{agent['id']}/release", json=RELEASE)

    (quarantined,) = audit_records(database, AuditEvent.AGENT_QUARANTINED)
    (released,) = audit_records(database, AuditEvent.AGENT_RELEASED)
    assert quarantined["target"] == ("agent", str(agent["id"]))
    assert quarantined["actor"] == ("user", str(admin_id))
    assert json.loads(quarantined["detail"]) == {
        "name": "researcher",
        "previous_status": "active",
        "reason": "prompt injection seen",
    }
    assert released["target"] == ("agent", str(agent["id"]))


def test_quarantine_twice_is_refused(client: TestClient, database: Database) -> None:
    agent = create_agent(client)
    _quarantine(client, agent["id"])

    response = client.post(f"/api/agents/{agent['id']}/quarantine", json={"reason": "again"})

    assert response.status_code == 409
    assert response.json()["message"] == f"agent {agent['id']} is already quarantined"
    assert len(audit_records(database, AuditEvent.AGENT_QUARANTINED)) == 1


def test_release_of_agent_not_quarantined_is_refused(client: TestClient) -> None:
    agent = create_agent(client)

    response = client.post(f"/api/agents/{agent['id']}/release", json=RELEASE)

    assert response.status_code == 409
    assert response.json()["message"] == f"agent {agent['id']} is not quarantined"


def test_status_route_cannot_lift_quarantine(client: TestClient) -> None:
    agent = create_agent(client)
    _quarantine(client, agent["id"])

    response = client.put(f"/api/agents/{agent['id']}/status", json={"status": "active"})

    assert response.status_code == 409
    assert "quarantine is set and lifted only with" in response.json()["message"]
    assert client.get(f"/api/agents/{agent['id']}").json()["status"] == "quarantined"


def test_quarantine_unknown_agent_404(client: TestClient) -> None:
    response = client.post("/api/agents/999999/quarantine", json={"reason": "x"})

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "body.reason"), ({"reason": ""}, "body.reason"), ({"reason": "x" * 201}, "body.reason")],
)
def test_quarantine_invalid_body_422(client: TestClient, body: dict, field: str) -> None:
    agent = create_agent(client)

    response = client.post(f"/api/agents/{agent['id']}/quarantine", json=body)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field
    assert client.get(f"/api/agents/{agent['id']}").json()["status"] == "active"


def test_developer_cannot_quarantine_or_release(
    client: TestClient, anonymous_client: TestClient, make_user: MakeUser
) -> None:
    developer = make_user(role=Role.DEVELOPER)
    agent = create_agent(client)

    quarantined = anonymous_client.post(
        f"/api/agents/{agent['id']}/quarantine", json={"reason": "x"}, headers=developer.headers
    )
    _quarantine(client, agent["id"])
    released = anonymous_client.post(
        f"/api/agents/{agent['id']}/release", json=RELEASE, headers=developer.headers
    )

    assert (quarantined.status_code, released.status_code) == (403, 403)
