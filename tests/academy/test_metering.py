"""Metering end to end: a session with a configured provider on 127.0.0.1 records its usage at
the model's prices, and a used-up budget stops the next run with an audit record."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from llero.academy.usage import UsageRecord
from llero.storage.db import Database
from tests.academy.provider_helpers import PROVIDERS, audit_records
from tests.command.provider_server import ProviderServer, allowing_provider, running_provider
from tests.conftest import FixtureUser

# $1 per million input tokens and $2 per million output tokens.
MODEL = {
    "name": "test-model",
    "input_micros_per_million": 1_000_000,
    "output_micros_per_million": 2_000_000,
}


provider_server = pytest.fixture(running_provider, name="provider_server")


settings = pytest.fixture(allowing_provider, name="settings")


@pytest.fixture
def dev_client(client: TestClient, developer: FixtureUser) -> Iterator[TestClient]:
    # The admin's client has started the app; this one shares it.
    with TestClient(client.app, raise_server_exceptions=False, headers=developer.headers) as dev:
        yield dev


@pytest.fixture
def chat_id(client: TestClient, dev_client: TestClient, provider_server: ProviderServer) -> int:
    created = client.post(
        PROVIDERS,
        json={
            "name": "local",
            "protocol": "openai",
            "base_url": f"{provider_server.base_url}/v1",
            "models": [MODEL],
        },
    )
    assert created.status_code == 201, created.text
    agent = dev_client.post(
        "/api/agents", json={"name": "echo", "provider": "local", "model": "test-model"}
    )
    assert agent.status_code == 201, agent.text
    session = dev_client.post("/api/sessions", json={"agent_id": agent.json()["id"]})
    assert session.status_code == 201, session.text
    return int(session.json()["id"])


def _send(dev_client: TestClient, chat_id: int, text: str) -> dict[str, Any]:
    response = dev_client.post(f"/api/sessions/{chat_id}/messages", json={"content": text})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_call_recorded_at_model_prices(
    dev_client: TestClient, database: Database, developer: FixtureUser, chat_id: int
) -> None:
    result = _send(dev_client, chat_id, "hi")

    assert result["status"] == "completed", result
    with database.reader() as session:
        records = session.scalars(select(UsageRecord)).all()
    assert len(records) == 1
    record = records[0]
    assert (record.user_id, record.session_id, record.provider, record.model) == (
        developer.id,
        chat_id,
        "local",
        "test-model",
    )
    assert record.input_tokens == result["usage"]["input_tokens"]
    assert record.output_tokens == result["usage"]["output_tokens"]
    assert record.cost_micros == record.input_tokens * 1 + record.output_tokens * 2
    report = dev_client.get("/api/usage", params={"group_by": "model"}).json()["items"]
    assert [(row["key"], row["calls"]) for row in report] == [("local/test-model", 1)]


def test_used_up_budget_stops_next_run(
    client: TestClient,
    dev_client: TestClient,
    database: Database,
    developer: FixtureUser,
    chat_id: int,
) -> None:
    first = _send(dev_client, chat_id, "hi")
    assert first["status"] == "completed", first
    budget = client.post(
        "/api/budgets",
        json={"scope": "user", "subject_id": developer.id, "period": "day", "amount_micros": 1},
    ).json()

    second = _send(dev_client, chat_id, "hi again")

    assert second["status"] == "stopped"
    assert second["error"].startswith(
        f"the daily budget of user {developer.id} of $0.000001 is used up"
    )
    with database.reader() as session:
        assert len(session.scalars(select(UsageRecord)).all()) == 1
    refusals = audit_records(database, "budget:exceeded")
    assert [(target, detail["subject_id"]) for target, detail in refusals] == [
        (str(budget["id"]), developer.id)
    ]
