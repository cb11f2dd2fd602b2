"""Sessions end to end: routes, run loop, webhook and client tools, storage, ownership."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.barracks.models import Agent, AgentStatus
from llero.command.engine import Engine, EngineSettings
from llero.command.providers.client import WireProtocol
from llero.command.run import RunLimits
from llero.command.webhooks import SIGNATURE_HEADER, verify
from llero.crypto import Secret
from llero.storage.db import Database
from llero.vault.models import SecretKind
from tests.command.helpers import (
    PROVIDER_KEY,
    SIGNING_KEY,
    LocalAcademy,
    WebhookServer,
    read_run_events,
    serve_webhooks,
)
from tests.command.provider_server import PlannedCall, ProviderServer
from tests.conftest import FixtureUser, MakeUser, database_file_bytes
from tests.forge.tool_helpers import tool_body

QUESTION = "What is the weather in Lisbon?"
SESSIONS = "/api/sessions"


@pytest.fixture
def webhooks() -> Iterator[WebhookServer]:
    yield from serve_webhooks()


@pytest.fixture
def developer(make_user: MakeUser) -> FixtureUser:
    return make_user(role=Role.DEVELOPER, email="dev@example.com")


@pytest.fixture
def academy(app: FastAPI, provider_server: ProviderServer, webhooks: WebhookServer) -> LocalAcademy:
    academy = LocalAcademy(
        provider_server.base_url,
        allowed=[f"127.0.0.1:{provider_server.port}", f"127.0.0.1:{webhooks.port}"],
    )
    app.state.command_engine = Engine(
        app.state.database,
        app.state.keyring,
        academy,
        EngineSettings(limits=RunLimits(max_steps=4, max_seconds=30)),
    )
    return academy


@pytest.fixture
def dev_client(app: FastAPI, developer: FixtureUser, academy: LocalAcademy) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False, headers=developer.headers) as client:
        yield client


def _agent(client: TestClient, webhooks: WebhookServer, app: FastAPI, *, webhook: bool) -> int:
    tool = client.post("/api/tools", json=tool_body("get_weather", status="active"))
    assert tool.status_code == 201, tool.text
    tool_id = tool.json()["id"]
    if webhook:
        secret = app.state.vault.create_secret(
            name="weather-hook",
            kind=SecretKind.WEBHOOK_SIGNING_KEY,
            value=Secret(SIGNING_KEY),
        )
        runner = client.put(
            f"/api/tools/{tool_id}/runner",
            json={"mode": "webhook", "url": webhooks.url, "signing_secret_id": secret.secret_id},
        )
        assert runner.status_code == 200, runner.text
    agent = client.post(
        "/api/agents",
        json={
            "name": "weather",
            "provider": "local",
            "model": "test-model",
            "system_prompt": "You answer weather questions.",
            "tool_ids": [tool_id],
        },
    )
    assert agent.status_code == 201, agent.text
    return int(agent.json()["id"])


def _session(client: TestClient, agent_id: int) -> int:
    response = client.post(SESSIONS, json={"agent_id": agent_id, "title": "Lisbon"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.mark.parametrize("protocol", [WireProtocol.OPENAI, WireProtocol.ANTHROPIC])
@pytest.mark.parametrize("stream", [False, True])
def test_session_runs_signed_webhook_tool(  # noqa: PLR0917 - pytest passes fixtures so
    app: FastAPI,
    dev_client: TestClient,
    academy: LocalAcademy,
    provider_server: ProviderServer,
    webhooks: WebhookServer,
    protocol: WireProtocol,
    stream: bool,
) -> None:
    academy.protocol = protocol
    provider_server.teach(QUESTION, [PlannedCall("get_weather", {"city": "Lisbon"})])
    chat_id = _session(dev_client, _agent(dev_client, webhooks, app, webhook=True))

    response = dev_client.post(
        f"{SESSIONS}/{chat_id}/messages", json={"content": QUESTION, "stream": stream}
    )

    assert response.status_code == 200, response.text
    if stream:
        streamed, result = read_run_events(response)
        assert streamed == result["text"]
    else:
        result = response.json()
    assert result["status"] == "completed", result
    assert result["text"].startswith("The tool answered: ")
    assert '"echo": {"city": "Lisbon"}' in result["text"]
    call = webhooks.calls[0]
    assert json.loads(call["body"])["arguments"] == {"city": "Lisbon"}
    assert verify(
        Secret(SIGNING_KEY), call["headers"][SIGNATURE_HEADER], call["body"], now=int(time.time())
    )
    assert "webhook:get_weather" in academy.resolved
    sent = provider_server.received[0]
    key_header = sent["headers"].get("authorization", "") + sent["headers"].get("x-api-key", "")
    assert PROVIDER_KEY in key_header
    assert len(academy.usage) == 2

    detail = dev_client.get(f"{SESSIONS}/{chat_id}").json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert detail["status"] == "idle"


def test_client_tool_pauses_until_results_posted(
    app: FastAPI,
    dev_client: TestClient,
    provider_server: ProviderServer,
    webhooks: WebhookServer,
) -> None:
    provider_server.teach(QUESTION, [PlannedCall("get_weather", {"city": "Lisbon"})])
    chat_id = _session(dev_client, _agent(dev_client, webhooks, app, webhook=False))

    paused = dev_client.post(f"{SESSIONS}/{chat_id}/messages", json={"content": QUESTION}).json()
    assert paused["status"] == "awaiting_tool_results"
    pending = paused["pending"][0]
    assert json.loads(pending["arguments"]) == {"city": "Lisbon"}
    busy = dev_client.post(f"{SESSIONS}/{chat_id}/messages", json={"content": "again"})
    assert busy.status_code == 409

    wrong = dev_client.post(
        f"{SESSIONS}/{chat_id}/tool-results",
        json={"results": [{"tool_call_id": "nope", "content": "x"}]},
    )
    assert wrong.status_code == 409
    assert "missing" in wrong.json()["message"]

    done = dev_client.post(
        f"{SESSIONS}/{chat_id}/tool-results",
        json={"results": [{"tool_call_id": pending["id"], "content": "19 degrees"}]},
    ).json()
    assert done["status"] == "completed"
    assert done["text"] == "The tool answered: 19 degrees"
    assert webhooks.calls == []


def test_invalid_arguments_are_not_run(
    app: FastAPI,
    dev_client: TestClient,
    provider_server: ProviderServer,
    webhooks: WebhookServer,
) -> None:
    provider_server.teach(QUESTION, [PlannedCall("get_weather", {"city": 5, "unit": "kelvin"})])
    chat_id = _session(dev_client, _agent(dev_client, webhooks, app, webhook=True))

    result = dev_client.post(f"{SESSIONS}/{chat_id}/messages", json={"content": QUESTION}).json()

    assert webhooks.calls == []
    assert result["status"] == "completed"
    assert "was not run: invalid arguments" in result["text"]
    assert "city" in result["text"]


@pytest.mark.parametrize("model", ["unknown-tool", "loop"])
def test_runaway_model_stops_at_step_limit(
    app: FastAPI,
    dev_client: TestClient,
    webhooks: WebhookServer,
    database: Database,
    model: str,
) -> None:
    agent_id = _agent(dev_client, webhooks, app, webhook=True)
    with database.transaction() as session:
        agent = session.get(Agent, agent_id)
        assert agent is not None
        agent.model = model
    chat_id = _session(dev_client, agent_id)

    result = dev_client.post(f"{SESSIONS}/{chat_id}/messages", json={"content": "hi"}).json()

    assert result["status"] == "step_limit"
    assert result["error"] == "stopped after 4 steps"
    if model == "unknown-tool":
        assert webhooks.calls == []
    history = dev_client.get(f"{SESSIONS}/{chat_id}").json()["messages"]
    assert len(history) == 1 + 4 * 2


def test_provider_failure_ends_cleanly_and_keeps_history(
    app: FastAPI, dev_client: TestClient, webhooks: WebhookServer, database: Database
) -> None:
    agent_id = _agent(dev_client, webhooks, app, webhook=True)
    with database.transaction() as session:
        agent = session.get(Agent, agent_id)
        assert agent is not None
        agent.model = "fail-500"
    chat_id = _session(dev_client, agent_id)

    result = dev_client.post(f"{SESSIONS}/{chat_id}/messages", json={"content": "hi"}).json()

    assert result["status"] == "failed"
    assert result["error"] == "local failed with 500"
    detail = dev_client.get(f"{SESSIONS}/{chat_id}").json()
    assert detail["status"] == "idle"
    assert [m["content"] for m in detail["messages"]] == ["hi"]


def test_over_budget_run_is_stopped(
    app: FastAPI, dev_client: TestClient, academy: LocalAcademy, webhooks: WebhookServer
) -> None:
    chat_id = _session(dev_client, _agent(dev_client, webhooks, app, webhook=True))
    academy.over_budget = True

    result = dev_client.post(f"{SESSIONS}/{chat_id}/messages", json={"content": "hi"}).json()

    assert result["status"] == "stopped"
    assert "budget" in result["error"]
    assert academy.usage == []


def test_quarantined_agent_cannot_start_a_session(
    app: FastAPI, dev_client: TestClient, webhooks: WebhookServer, database: Database
) -> None:
    agent_id = _agent(dev_client, webhooks, app, webhook=True)
    chat_id = _session(dev_client, agent_id)
    with database.transaction() as session:
        agent = session.get(Agent, agent_id)
        assert agent is not None
        agent.status = AgentStatus.QUARANTINED

    created = dev_client.post(SESSIONS, json={"agent_id": agent_id})
    result = dev_client.post(f"{SESSIONS}/{chat_id}/messages", json={"content": "hi"}).json()

    assert created.status_code == 409
    assert "quarantined" in created.json()["message"]
    assert result["status"] == "failed"
    assert "quarantined" in result["error"]


def test_other_users_session_is_not_found(
    app: FastAPI,
    dev_client: TestClient,
    make_user: MakeUser,
    webhooks: WebhookServer,
) -> None:
    chat_id = _session(dev_client, _agent(dev_client, webhooks, app, webhook=True))
    other = make_user(role=Role.DEVELOPER, email="other@example.com")
    admin = make_user(role=Role.ADMIN, email="root@example.com")

    for user in (other, admin):
        with TestClient(app, raise_server_exceptions=False, headers=user.headers) as client:
            read = client.get(f"{SESSIONS}/{chat_id}")
            missing = client.get(f"{SESSIONS}/999999")
            run = client.post(f"{SESSIONS}/{chat_id}/messages", json={"content": "hi"})
            assert read.status_code == missing.status_code == run.status_code == 404
            assert read.json()["message"] == missing.json()["message"]
            assert client.get(SESSIONS).json()["total"] == 0


def test_viewer_cannot_run_an_agent(
    app: FastAPI, dev_client: TestClient, make_user: MakeUser, webhooks: WebhookServer
) -> None:
    agent_id = _agent(dev_client, webhooks, app, webhook=True)
    viewer = make_user(role=Role.VIEWER, email="viewer@example.com")
    with TestClient(app, raise_server_exceptions=False, headers=viewer.headers) as client:
        response = client.post(SESSIONS, json={"agent_id": agent_id})
    assert response.status_code == 403


def test_messages_are_sealed_at_rest(
    app: FastAPI,
    dev_client: TestClient,
    provider_server: ProviderServer,
    webhooks: WebhookServer,
    database: Database,
) -> None:
    planted = "my passport number is X1234-PLANTED-5678"
    chat_id = _session(dev_client, _agent(dev_client, webhooks, app, webhook=True))
    dev_client.post(f"{SESSIONS}/{chat_id}/messages", json={"content": planted})

    assert dev_client.get(f"{SESSIONS}/{chat_id}").json()["messages"][0]["content"] == planted
    if not database.url.startswith("sqlite"):
        pytest.skip("the raw file check reads the SQLite file; PostgreSQL is covered by pg_dump")
    database.engine.dispose()
    path = Path(database.url.removeprefix("sqlite:///"))
    raw = database_file_bytes(path.parent.glob(path.name + "*"))
    assert planted.encode() not in raw
    assert PROVIDER_KEY.encode() not in raw


def test_oversized_message_is_rejected(
    app: FastAPI, dev_client: TestClient, webhooks: WebhookServer
) -> None:
    chat_id = _session(dev_client, _agent(dev_client, webhooks, app, webhook=True))
    response = dev_client.post(
        f"{SESSIONS}/{chat_id}/messages",
        content=b'{"content": "' + b"a" * 10_000_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_webhook_url_outside_egress_rules_is_refused(
    app: FastAPI, dev_client: TestClient, webhooks: WebhookServer
) -> None:
    tool_id = dev_client.post("/api/tools", json=tool_body("lookup")).json()["id"]
    response = dev_client.put(
        f"/api/tools/{tool_id}/runner",
        json={"mode": "webhook", "url": f"http://127.0.0.1:{webhooks.port + 1}/tool"},
    )
    assert response.status_code == 422
    assert "plain http is allowed only to endpoints an admin listed" in response.json()["message"]


def test_private_agent_of_another_developer_is_not_found(
    app: FastAPI, dev_client: TestClient, make_user: MakeUser, webhooks: WebhookServer
) -> None:
    agent_id = _agent(dev_client, webhooks, app, webhook=True)
    other = make_user(role=Role.DEVELOPER, email="other@example.com")
    with TestClient(app, raise_server_exceptions=False, headers=other.headers) as client:
        hidden = client.post(SESSIONS, json={"agent_id": agent_id})
        missing = client.post(SESSIONS, json={"agent_id": 999999})
        assert hidden.status_code == missing.status_code == 404
        expected = missing.json()["message"].replace("999999", str(agent_id))
        assert hidden.json()["message"] == expected

        shared = dev_client.post(f"/api/agents/{agent_id}/shares", json={"user_id": other.id})
        assert shared.status_code == 201, shared.text
        assert client.post(SESSIONS, json={"agent_id": agent_id}).status_code == 201
