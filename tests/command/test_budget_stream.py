"""Budgets while a reply streams, and the per-agent rate limit.

A budget that runs out mid-stream cuts the reply off and records both the estimated usage and
the refusal. The agent's rate limit refuses calls past the limit with 429.
"""

import json
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.config.settings import Settings
from llero.storage.db import Database
from llero.web.app import create_app
from tests.command.helpers import serve_app
from tests.command.provider_server import LONG_ANSWER, ProviderServer, allowing_provider
from tests.conftest import FixtureUser, MakeUser

# One micro-dollar per output token, so the budget below buys about 100 tokens.
LONG_MODEL = {"name": "long", "input_micros_per_million": 0, "output_micros_per_million": 10**6}
BUDGET_MICROS = 100
STREAM_BODY = {"model": "agent:talker", "messages": [{"role": "user", "content": "Tell me."}]}


settings = pytest.fixture(allowing_provider, name="settings")


def _setup(client: TestClient, developer: FixtureUser, base_url: str) -> tuple[str, int]:
    """Configure the provider and the developer's agent; return an API token of the developer
    and the agent's id."""
    provider = client.post(
        "/api/providers",
        json={
            "name": "local",
            "protocol": "openai",
            "base_url": f"{base_url}/v1",
            "models": [LONG_MODEL],
        },
    )
    assert provider.status_code == 201, provider.text
    agent = client.post(
        "/api/agents",
        json={"name": "talker", "provider": "local", "model": "long"},
        headers=developer.headers,
    )
    assert agent.status_code == 201, agent.text
    token = client.post(
        "/api/tokens",
        json={"name": "script", "scopes": ["chat_session:run"]},
        headers=developer.headers,
    )
    assert token.status_code == 201, token.text
    return str(token.json()["token"]), agent.json()["id"]


def _set_daily_budget(client: TestClient, developer: FixtureUser) -> None:
    """Give the developer a daily budget of BUDGET_MICROS."""
    budget = client.post(
        "/api/budgets",
        json={
            "scope": "user",
            "subject_id": developer.id,
            "period": "day",
            "amount_micros": BUDGET_MICROS,
        },
    )
    assert budget.status_code == 201, budget.text


def _events(body: str) -> list[dict[str, Any]]:
    lines = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def test_openai_client_gets_quota_error_without_retrying(
    app: Any, client: TestClient, developer: FixtureUser, provider_server: ProviderServer
) -> None:
    token, _agent_id = _setup(client, developer, provider_server.base_url)
    budget = client.post(
        "/api/budgets",
        json={"scope": "user", "subject_id": developer.id, "period": "day", "amount_micros": 0},
    )
    assert budget.status_code == 201, budget.text

    for base_url in serve_app(app):
        # Two retries allowed: the answer's x-should-retry must stop them.
        caller = openai.OpenAI(base_url=f"{base_url}/v1", api_key=token, max_retries=2)
        with pytest.raises(openai.RateLimitError) as raised:
            caller.chat.completions.create(
                model="agent:talker", messages=[{"role": "user", "content": "Hi"}]
            )

    assert raised.value.code == "insufficient_quota"
    exported = client.get("/api/audit/export", params={"event": "budget:exceeded"})
    assert exported.text.count('"budget:exceeded"') == 1
    (refusal,) = [json.loads(line) for line in exported.text.splitlines() if line]
    # The refusal's record names the request the client got its error for.
    assert refusal["request_id"] == raised.value.response.headers["x-request-id"]
    assert refusal["client_address"] == "127.0.0.1"
    assert provider_server.received == []


def test_budget_crossed_mid_stream_cuts_answer(
    client: TestClient, developer: FixtureUser, provider_server: ProviderServer
) -> None:
    token, _agent_id = _setup(client, developer, provider_server.base_url)
    _set_daily_budget(client, developer)

    response = client.post(
        "/v1/chat/completions",
        json={**STREAM_BODY, "stream": True},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 200
    events = _events(response.text)
    text = "".join(
        event["choices"][0]["delta"].get("content") or ""
        for event in events
        if event.get("choices")
    )
    errors = [event["error"] for event in events if "error" in event]
    assert 0 < len(text) < len(LONG_ANSWER) // 10
    assert LONG_ANSWER.startswith(text)
    assert len(errors) == 1
    assert "budget ran out while the answer streamed" in errors[0]["message"]
    finishes = [event["choices"][0]["finish_reason"] for event in events if event.get("choices")]
    assert not any(finishes)

    usage = client.get("/api/usage", params={"group_by": "user"})
    assert usage.status_code == 200, usage.text
    (row,) = usage.json()["items"]
    assert row["cost_micros"] > BUDGET_MICROS
    exported = client.get("/api/audit/export", params={"event": "budget:exceeded"})
    assert exported.text.count('"budget:exceeded"') == 1

    again = client.post(
        "/v1/chat/completions", json=STREAM_BODY, headers={"Authorization": f"Bearer {token}"}
    )
    # The status and type of OpenAI's exhausted quota, with retries switched off.
    assert again.status_code == 429
    assert again.headers["x-should-retry"] == "false"
    assert "budget" in again.json()["error"]["message"]
    assert again.json()["error"]["type"] == "insufficient_quota"
    streamed_again = client.post(
        "/v1/chat/completions",
        json={**STREAM_BODY, "stream": True},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert streamed_again.status_code == 429
    assert streamed_again.json()["error"]["type"] == "insufficient_quota"
    assert len(provider_server.received) == 1


def test_stream_within_budget_is_whole(
    client: TestClient, developer: FixtureUser, provider_server: ProviderServer
) -> None:
    token, _agent_id = _setup(client, developer, provider_server.base_url)
    budget = client.post(
        "/api/budgets",
        json={"scope": "overall", "period": "month", "amount_micros": 10**9},
    )
    assert budget.status_code == 201, budget.text

    response = client.post(
        "/v1/chat/completions",
        json={**STREAM_BODY, "stream": True},
        headers={"Authorization": f"Bearer {token}"},
    )

    events = _events(response.text)
    text = "".join(
        event["choices"][0]["delta"].get("content") or ""
        for event in events
        if event.get("choices")
    )
    assert text == LONG_ANSWER
    assert not [event for event in events if "error" in event]


def test_agent_rate_limit_refuses_third_call(
    settings: Settings,
    database: Database,
    make_user: MakeUser,
    provider_server: ProviderServer,
) -> None:
    limited = settings.model_copy(
        update={"rate_limit_enabled": True, "rate_limit_agent": "2/minute"}
    )
    app = create_app(limited, database)
    with TestClient(app, raise_server_exceptions=False) as client:
        admin = make_user(role=Role.ADMIN, email="limits-admin@example.com")
        developer = make_user(role=Role.DEVELOPER, email="limits-dev@example.com")
        client.headers.update(admin.headers)
        token, _agent_id = _setup(client, developer, provider_server.base_url)
        headers = {"Authorization": f"Bearer {token}"}

        answers = [
            client.post("/v1/chat/completions", json=STREAM_BODY, headers=headers) for _ in range(3)
        ]

    assert [answer.status_code for answer in answers[:2]] == [200, 200]
    assert answers[2].status_code == 429
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert len(provider_server.received) == 2


def test_session_stream_cut_off_reports_usage(
    client: TestClient, developer: FixtureUser, provider_server: ProviderServer
) -> None:
    _token, agent_id = _setup(client, developer, provider_server.base_url)
    _set_daily_budget(client, developer)
    chat = client.post("/api/sessions", json={"agent_id": agent_id}, headers=developer.headers)
    assert chat.status_code == 201, chat.text

    response = client.post(
        f"/api/sessions/{chat.json()['id']}/messages",
        json={"content": "Tell me.", "stream": True},
        headers=developer.headers,
    )

    assert response.status_code == 200
    blocks = [block for block in response.text.split("\n\n") if block.startswith("event: result")]
    (result,) = [json.loads(block.split("data: ", 1)[1]) for block in blocks]
    assert result["status"] == "stopped"
    assert "budget ran out while the answer streamed" in result["error"]
    assert result["usage"]["output_tokens"] > 0
