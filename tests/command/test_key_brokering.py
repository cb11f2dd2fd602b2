"""Key brokering end to end: the provider key reaches the provider only for granted agents.

A configured provider on 127.0.0.1 with a key in the vault; the agent's owner grants the key,
the session runs, and the provider sees the key while the user, responses and logs never do.
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.command.provider_server import ProviderServer, allowing_provider
from tests.conftest import FixtureUser

PROVIDER_KEY = "sk-live-brokered-key-planted-5541aa"
MODEL = {"name": "test-model", "input_micros_per_million": 0, "output_micros_per_million": 0}


settings = pytest.fixture(allowing_provider, name="settings")


@pytest.fixture
def dev_client(client: TestClient, developer: FixtureUser) -> Iterator[TestClient]:
    with TestClient(client.app, raise_server_exceptions=False, headers=developer.headers) as dev:
        yield dev


def _setup(client: TestClient, dev_client: TestClient, base_url: str) -> tuple[int, int, int]:
    """Store the key, configure the provider with it, create an agent; return their ids."""
    secret = client.post(
        "/api/secrets",
        json={"name": "local-key", "kind": "provider_api_key", "value": PROVIDER_KEY},
    )
    assert secret.status_code == 201, secret.text
    secret_id = secret.json()["id"]
    provider = client.post(
        "/api/providers",
        json={
            "name": "local",
            "protocol": "openai",
            "base_url": f"{base_url}/v1",
            "secret_id": secret_id,
            "models": [MODEL],
        },
    )
    assert provider.status_code == 201, provider.text
    agent = dev_client.post(
        "/api/agents", json={"name": "echo", "provider": "local", "model": "test-model"}
    )
    assert agent.status_code == 201, agent.text
    chat = dev_client.post("/api/sessions", json={"agent_id": agent.json()["id"]})
    assert chat.status_code == 201, chat.text
    return secret_id, agent.json()["id"], chat.json()["id"]


def _send(dev_client: TestClient, chat_id: int) -> dict[str, Any]:
    response = dev_client.post(f"/api/sessions/{chat_id}/messages", json={"content": "hello"})
    assert response.status_code == 200, response.text
    assert PROVIDER_KEY not in response.text
    result: dict[str, Any] = response.json()
    result["request_id"] = response.headers["x-request-id"]
    return result


def test_ungranted_agent_gets_no_key(
    client: TestClient, dev_client: TestClient, provider_server: ProviderServer
) -> None:
    _secret_id, _agent_id, chat_id = _setup(client, dev_client, provider_server.base_url)

    result = _send(dev_client, chat_id)

    assert result["status"] == "stopped"
    assert "grant" in result["error"]
    assert provider_server.received == []


def test_granted_agent_calls_provider_with_key(
    client: TestClient,
    dev_client: TestClient,
    provider_server: ProviderServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret_id, agent_id, chat_id = _setup(client, dev_client, provider_server.base_url)
    grant = client.post(
        f"/api/secrets/{secret_id}/grants",
        json={"agent_id": agent_id, "purpose": "provider:local"},
    )
    assert grant.status_code == 201, grant.text

    result = _send(dev_client, chat_id)

    assert result["status"] == "completed", result
    assert provider_server.received[0]["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert PROVIDER_KEY not in caplog.text
    export = client.get("/api/audit/export")
    assert PROVIDER_KEY not in export.text
    used = [json.loads(line) for line in export.text.splitlines() if '"secret:used"' in line]
    assert len(used) == 1
    # The agent used the key, for the request that started the run.
    assert used[0]["actor"] == {"kind": "agent", "id": str(agent_id)}
    assert used[0]["request_id"] == result["request_id"]
