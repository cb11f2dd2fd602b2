"""/v1 calls serve the agent, route, budgets and grant from a cache, and a change ends it at once.

Each test makes one call that fills the cache, then changes the configuration one way and
expects the next call to apply the change. The changes come through the API, through plain SQL
on another connection (as another process would make them), and from the clock alone.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from llero.command import engine as engine_module
from llero.storage.base import utc_now
from llero.storage.db import Database
from tests.command.provider_server import ProviderServer, allowing_provider
from tests.conftest import FixtureUser

PROVIDER_KEY = "sk-live-cached-route-key-7781bc"
MODEL = {
    "name": "test-model",
    "input_micros_per_million": 1_000_000,
    "output_micros_per_million": 0,
}
BODY = {"model": "agent:echo", "messages": [{"role": "user", "content": "hello"}]}


settings = pytest.fixture(allowing_provider, name="settings")


@pytest.fixture
def configured(
    client: TestClient, developer: FixtureUser, provider_server: ProviderServer
) -> dict[str, Any]:
    """Store a keyed provider, an agent granted the key and an API token; return their ids."""
    secret = client.post(
        "/api/secrets",
        json={"name": "local-key", "kind": "provider_api_key", "value": PROVIDER_KEY},
    )
    assert secret.status_code == 201, secret.text
    provider = client.post(
        "/api/providers",
        json={
            "name": "local",
            "protocol": "openai",
            "base_url": f"{provider_server.base_url}/v1",
            "secret_id": secret.json()["id"],
            "models": [MODEL],
        },
    )
    assert provider.status_code == 201, provider.text
    with TestClient(client.app, headers=developer.headers) as dev:
        agent = dev.post(
            "/api/agents", json={"name": "echo", "provider": "local", "model": "test-model"}
        )
        assert agent.status_code == 201, agent.text
        token = dev.post("/api/tokens", json={"name": "script", "scopes": ["chat_session:run"]})
        assert token.status_code == 201, token.text
    grant = client.post(
        f"/api/secrets/{secret.json()['id']}/grants",
        json={"agent_id": agent.json()["id"], "purpose": "provider:local"},
    )
    assert grant.status_code == 201, grant.text
    return {
        "secret_id": secret.json()["id"],
        "provider_id": provider.json()["id"],
        "agent_id": agent.json()["id"],
        "grant_id": grant.json()["id"],
        "user_id": developer.id,
        "token": token.json()["token"],
    }


@pytest.fixture
def script(client: TestClient, configured: dict[str, Any]) -> Iterator[TestClient]:
    """A client that calls /v1 with the developer's API token."""
    headers = {"Authorization": f"Bearer {configured['token']}"}
    with TestClient(client.app, raise_server_exceptions=False, headers=headers) as calling:
        first = calling.post("/v1/chat/completions", json=BODY)
        assert first.status_code == 200, first.text
        yield calling


def _assert_refused(script: TestClient, words: str) -> None:
    response = script.post("/v1/chat/completions", json=BODY)
    assert response.status_code in {403, 404, 409, 429}, response.text
    assert words in response.json()["error"]["message"]


def test_repeated_call_reads_no_configuration(
    script: TestClient,
    client: TestClient,
    database: Database,
    provider_server: ProviderServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    statements: list[str] = []

    def remember(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", remember)
    try:
        again = script.post("/v1/chat/completions", json=BODY)
    finally:
        event.remove(database.engine, "before_cursor_execute", remember)

    assert again.status_code == 200, again.text
    assert provider_server.received[-1]["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    configuration = ("FROM agents", "FROM providers", "FROM secret_grants", "FROM budgets")
    assert [s for s in statements if any(table in s for table in configuration)] == []
    # The key served from the cached envelope reaches the provider only.
    assert PROVIDER_KEY not in again.text
    assert PROVIDER_KEY not in caplog.text
    assert PROVIDER_KEY not in client.get("/api/audit/export").text
    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM secret_versions")).all()
    assert PROVIDER_KEY not in repr(rows)


def test_quarantine_stops_the_next_call(
    script: TestClient, client: TestClient, configured: dict[str, Any]
) -> None:
    quarantined = client.post(
        f"/api/agents/{configured['agent_id']}/quarantine", json={"reason": "leaked prompt"}
    )
    assert quarantined.status_code == 200, quarantined.text

    _assert_refused(script, "quarantined")


def test_revoked_grant_stops_the_next_call(
    script: TestClient, client: TestClient, configured: dict[str, Any]
) -> None:
    revoked = client.delete(
        f"/api/secrets/{configured['secret_id']}/grants/{configured['grant_id']}"
    )
    assert revoked.status_code == 204, revoked.text

    _assert_refused(script, "not_granted")


def test_new_budget_applies_to_the_next_call(
    script: TestClient, client: TestClient, configured: dict[str, Any]
) -> None:
    budget = client.post(
        "/api/budgets",
        json={
            "scope": "user",
            "subject_id": configured["user_id"],
            "period": "day",
            "amount_micros": 1,
        },
    )
    assert budget.status_code == 201, budget.text

    _assert_refused(script, "budget")
    # The first refusal read the budgets in a transaction that was rolled back; the cached
    # copies must outlive it.
    _assert_refused(script, "budget")


def test_plain_sql_change_applies_to_next_call(
    script: TestClient, database: Database, configured: dict[str, Any]
) -> None:
    # As `llero` in another process, or an operator with a SQL shell, would change it.
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE agents SET status = 'disabled' WHERE id = :id"),
            {"id": configured["agent_id"]},
        )

    _assert_refused(script, "disabled")


def test_agent_expiry_is_checked_on_every_call(
    script: TestClient,
    client: TestClient,
    configured: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expires = utc_now() + timedelta(hours=1)
    changed = client.put(
        f"/api/agents/{configured['agent_id']}",
        json={"expires_at": expires.isoformat()},
    )
    assert changed.status_code == 200, changed.text
    assert script.post("/v1/chat/completions", json=BODY).status_code == 200

    # Only the clock moves: the cached plan must still refuse the expired agent.
    monkeypatch.setattr(engine_module, "utc_now", lambda: expires + timedelta(seconds=1))

    _assert_refused(script, "expired")
