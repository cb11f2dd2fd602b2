"""Granting secrets to agents: purposes that fit the secret's kind and the agent's provider, and
developers limited to their own secrets and their own agents."""

import pytest
from fastapi.testclient import TestClient

from llero.academy import service as academy_service
from llero.access.roles import Role
from llero.barracks.models import Agent
from llero.storage.db import Database
from tests.academy.helpers import add_agent, create_secret
from tests.conftest import FixtureUser, MakeUser


def _grant(
    client: TestClient,
    secret_id: int,
    agent_id: int,
    purpose: str = "provider:openai",
    headers: dict[str, str] | None = None,
) -> dict[str, object]:
    response = client.post(
        f"/api/secrets/{secret_id}/grants",
        json={"agent_id": agent_id, "purpose": purpose},
        headers=headers,
    )
    return {"status": response.status_code, **response.json()}


def test_admin_grants_and_revokes(
    client: TestClient, database: Database, admin: FixtureUser
) -> None:
    agent_id = add_agent(database, "writer")
    secret_id = create_secret(client).json()["id"]

    granted = _grant(client, secret_id, agent_id)
    listed = client.get(f"/api/secrets/{secret_id}/grants").json()["items"]
    revoked = client.delete(f"/api/secrets/{secret_id}/grants/{granted['id']}")

    assert granted["status"] == 201
    assert granted["agent_id"] == agent_id
    assert granted["purpose"] == "provider:openai"
    assert granted["granted_by_user_id"] == admin.id
    assert [grant["id"] for grant in listed] == [granted["id"]]
    assert revoked.status_code == 204
    assert client.get(f"/api/secrets/{secret_id}/grants").json()["items"] == []


def test_duplicate_grant_conflicts(client: TestClient, database: Database) -> None:
    agent_id = add_agent(database, "writer")
    secret_id = create_secret(client).json()["id"]
    _grant(client, secret_id, agent_id)

    again = _grant(client, secret_id, agent_id)

    assert again["status"] == 409
    assert (
        again["message"] == f"agent {agent_id} already holds secret {secret_id} for provider:openai"
    )


@pytest.mark.parametrize(
    ("kind", "purpose", "message"),
    [
        (
            "provider_api_key",
            "webhook:billing",
            "purpose: a secret of kind provider_api_key can only be granted for provider:<name>",
        ),
        (
            "webhook_signing_key",
            "provider:openai",
            "purpose: a secret of kind webhook_signing_key can only be granted for webhook:<name>",
        ),
        (
            "generic",
            "provider:openai",
            "purpose: a secret of kind generic can only be granted for generic:<name>",
        ),
        (
            "provider_api_key",
            "provider:anthropic",
            "purpose: agent {agent} calls provider 'openai', not 'anthropic'",
        ),
    ],
)
def test_purpose_must_fit_kind_and_provider(
    client: TestClient, database: Database, kind: str, purpose: str, message: str
) -> None:
    agent_id = add_agent(database, "writer", provider="OpenAI")
    secret_id = create_secret(client, kind=kind).json()["id"]

    response = _grant(client, secret_id, agent_id, purpose)

    assert response["status"] == 422
    assert response["message"] == message.format(agent=agent_id).replace("'openai'", "'OpenAI'")


@pytest.mark.parametrize(
    "purpose", ["openai", "provider:", "provider:Open AI", "provider:" + "a" * 65, "api:openai"]
)
def test_malformed_purpose_rejected(client: TestClient, database: Database, purpose: str) -> None:
    agent_id = add_agent(database, "writer")
    secret_id = create_secret(client).json()["id"]

    response = _grant(client, secret_id, agent_id, purpose)

    assert response["status"] == 422


def test_grant_to_missing_agent_not_found(client: TestClient) -> None:
    secret_id = create_secret(client).json()["id"]

    response = _grant(client, secret_id, 999_999)

    assert response["status"] == 404
    assert response["message"] == "agent 999999 not found"


def test_revoke_grant_of_other_secret_not_found(client: TestClient, database: Database) -> None:
    agent_id = add_agent(database, "writer")
    first = create_secret(client, name="first").json()["id"]
    second = create_secret(client, name="second").json()["id"]
    grant = _grant(client, first, agent_id)

    response = client.delete(f"/api/secrets/{second}/grants/{grant['id']}")

    assert response.status_code == 404
    assert len(client.get(f"/api/secrets/{first}/grants").json()["items"]) == 1


@pytest.fixture
def owners(monkeypatch: pytest.MonkeyPatch) -> dict[int, int]:
    """Agent owners by agent id, standing in for the owner column agents do not have yet."""
    table: dict[int, int] = {}

    def owner_of(agent: Agent) -> int | None:
        return table.get(agent.id)

    monkeypatch.setattr(academy_service, "agent_owner_id", owner_of)
    return table


def test_developer_grants_own_secret_to_own_agent(
    anonymous_client: TestClient, database: Database, make_user: MakeUser, owners: dict[int, int]
) -> None:
    developer = make_user(role=Role.DEVELOPER)
    agent_id = add_agent(database, "mine")
    owners[agent_id] = developer.id
    secret_id = create_secret(anonymous_client, developer.headers).json()["id"]

    response = _grant(anonymous_client, secret_id, agent_id, headers=developer.headers)

    assert response["status"] == 201


def test_developer_cannot_grant_to_agent_of_another(
    anonymous_client: TestClient, database: Database, make_user: MakeUser, owners: dict[int, int]
) -> None:
    developer = make_user(role=Role.DEVELOPER)
    other: FixtureUser = make_user(role=Role.DEVELOPER)
    theirs = add_agent(database, "theirs")
    unowned = add_agent(database, "unowned")
    owners[theirs] = other.id
    secret_id = create_secret(anonymous_client, developer.headers).json()["id"]

    for agent_id in (theirs, unowned):
        response = _grant(anonymous_client, secret_id, agent_id, headers=developer.headers)

        assert response["status"] == 403
        assert response["message"] == "you can grant secrets only to agents you own"


def test_developer_cannot_grant_secret_of_another_to_own_agent(
    anonymous_client: TestClient, database: Database, make_user: MakeUser, owners: dict[int, int]
) -> None:
    developer = make_user(role=Role.DEVELOPER)
    victim = make_user(role=Role.DEVELOPER)
    agent_id = add_agent(database, "mine")
    owners[agent_id] = developer.id
    secret_id = create_secret(anonymous_client, victim.headers).json()["id"]

    response = _grant(anonymous_client, secret_id, agent_id, headers=developer.headers)

    assert response["status"] == 404
    assert response["message"] == f"secret {secret_id} not found"


def test_admin_grants_developer_secret_to_any_agent(
    client: TestClient, anonymous_client: TestClient, database: Database, make_user: MakeUser
) -> None:
    developer = make_user(role=Role.DEVELOPER)
    agent_id = add_agent(database, "shared")
    secret_id = create_secret(anonymous_client, developer.headers).json()["id"]

    assert _grant(client, secret_id, agent_id)["status"] == 201


def test_deleting_agent_removes_its_grants(client: TestClient, database: Database) -> None:
    agent_id = add_agent(database, "short-lived")
    secret_id = create_secret(client).json()["id"]
    _grant(client, secret_id, agent_id)

    assert client.delete(f"/api/agents/{agent_id}").status_code == 204

    assert client.get(f"/api/secrets/{secret_id}/grants").json()["items"] == []
