"""The OpenAI-compatible endpoint, driven by the official openai package."""

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from llero.access.roles import Role
from llero.barracks.models import Agent
from llero.command.engine import Engine
from tests.command.helpers import LocalAcademy, WebhookServer, serve_app, serve_webhooks
from tests.command.provider_server import PlannedCall, ProviderServer
from tests.conftest import MakeUser
from tests.forge.tool_helpers import tool_body

QUESTION = "What is the weather in Lisbon?"


@pytest.fixture
def webhooks() -> Iterator[WebhookServer]:
    yield from serve_webhooks()


@pytest.fixture
def llero_url(
    app: FastAPI, provider_server: ProviderServer, webhooks: WebhookServer
) -> Iterator[str]:
    academy = LocalAcademy(
        provider_server.base_url,
        allowed=[f"127.0.0.1:{provider_server.port}", f"127.0.0.1:{webhooks.port}"],
    )
    app.state.command_engine = Engine(app.state.database, app.state.keyring, academy)
    yield from serve_app(app)


@pytest.fixture
def api_token(app: FastAPI, make_user: MakeUser, webhooks: WebhookServer) -> str:
    developer = make_user(role=Role.DEVELOPER, email="dev@example.com")
    with TestClient(app, raise_server_exceptions=False, headers=developer.headers) as client:
        weather = client.post("/api/tools", json=tool_body("get_weather", status="active"))
        webhook_tool = client.post("/api/tools", json=tool_body("get_forecast", status="active"))
        client.put(
            f"/api/tools/{webhook_tool.json()['id']}/runner",
            json={"mode": "webhook", "url": webhooks.url},
        )
        agent = client.post(
            "/api/agents",
            json={
                "name": "weather",
                "provider": "local",
                "model": "test-model",
                "tool_ids": [weather.json()["id"], webhook_tool.json()["id"]],
            },
        )
        assert agent.status_code == 201, agent.text
        token = client.post("/api/tokens", json={"name": "script", "scopes": ["chat_session:run"]})
        assert token.status_code == 201, token.text
        return str(token.json()["token"])


def _client(llero_url: str, api_token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llero_url}/v1", api_key=api_token, max_retries=0)


def test_openai_client_gets_client_tool_call_then_answer(
    llero_url: str, api_token: str, provider_server: ProviderServer
) -> None:
    provider_server.teach(QUESTION, [PlannedCall("get_weather", {"city": "Lisbon"})])
    client = _client(llero_url, api_token)
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "ignored: the agent's own prompt counts"},
        {"role": "user", "content": QUESTION},
    ]

    first = client.chat.completions.with_raw_response.create(
        model="agent:weather",
        messages=messages,  # type: ignore[arg-type]
    )
    completion = first.parse()
    assert float(first.headers["x-llero-overhead-ms"]) >= 0
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Lisbon"}  # type: ignore[union-attr]
    assert "ignored" not in json.dumps(provider_server.received[0]["body"])

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "19 degrees"},
    ]
    final = client.chat.completions.create(model="agent:weather", messages=messages)  # type: ignore[arg-type]
    assert final.choices[0].message.content == "The tool answered: 19 degrees"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.total_tokens > 0


def test_openai_client_streams_webhook_tool_answer(
    llero_url: str, api_token: str, provider_server: ProviderServer, webhooks: WebhookServer
) -> None:
    provider_server.teach(QUESTION, [PlannedCall("get_forecast", {"city": "Porto"})])
    stream = _client(llero_url, api_token).chat.completions.create(
        model="agent:weather",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == 'The tool answered: {"tool": "get_forecast", "echo": {"city": "Porto"}}'
    assert json.loads(webhooks.calls[0]["body"])["arguments"] == {"city": "Porto"}


def test_unknown_agent_and_bad_token_are_refused(llero_url: str, api_token: str) -> None:
    with pytest.raises(openai.NotFoundError):
        _client(llero_url, api_token).chat.completions.create(
            model="agent:nobody", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.UnprocessableEntityError):
        _client(llero_url, api_token).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.AuthenticationError):
        _client(llero_url, "llero_pat_not-a-real-token").chat.completions.create(
            model="agent:weather", messages=[{"role": "user", "content": "hi"}]
        )


def test_refusal_reaches_openai_client_once(
    app: FastAPI, llero_url: str, api_token: str, provider_server: ProviderServer
) -> None:
    app.state.command_engine.academy.over_budget = True
    sent: list[httpx.Request] = []
    http_client = httpx.Client(event_hooks={"request": [sent.append]})
    client = openai.OpenAI(
        base_url=f"{llero_url}/v1", api_key=api_token, max_retries=2, http_client=http_client
    )

    with pytest.raises(openai.ConflictError) as raised:
        client.chat.completions.create(
            model="agent:weather", messages=[{"role": "user", "content": QUESTION}]
        )

    assert "budget of this user is spent" in raised.value.message
    assert raised.value.code == "refused"
    assert len(sent) == 1
    assert provider_server.received == []
    http_client.close()


def test_provider_failure_is_bad_gateway(
    app: FastAPI, llero_url: str, api_token: str, provider_server: ProviderServer
) -> None:
    sent: list[httpx.Request] = []
    http_client = httpx.Client(event_hooks={"request": [sent.append]})
    client = openai.OpenAI(
        base_url=f"{llero_url}/v1", api_key=api_token, max_retries=2, http_client=http_client
    )
    # The provider server returns a body that is not JSON for this model.
    with app.state.database.transaction() as session:
        session.execute(update(Agent).where(Agent.name == "weather").values(model="malformed"))

    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(
            model="agent:weather", messages=[{"role": "user", "content": QUESTION}]
        )

    assert raised.value.status_code == 502
    assert raised.value.code == "provider_failed"
    # A retry gets the same malformed body, so the response asks the client not to retry.
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert len(sent) == 1
    http_client.close()
