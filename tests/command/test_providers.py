"""Provider adapters against a local server speaking both wire protocols."""

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog

from llero.command.providers.base import (
    ChatRequest,
    Completion,
    FailureKind,
    Message,
    ProviderFailure,
    TextDelta,
    ToolCall,
    ToolSpec,
)
from llero.command.providers.client import Endpoint, ProviderClient, RetryPolicy, WireProtocol
from llero.crypto import Secret
from llero.egress import EgressPolicy, EgressRefused, GuardedSession
from tests.command.provider_server import PlannedCall, ProviderServer

pytestmark = pytest.mark.anyio

KEY = Secret("sk-test-planted-key-0123456789")
WEATHER = ToolSpec(
    "get_weather",
    "Current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
QUESTION = "What is the weather in Lisbon?"
PROTOCOLS = [WireProtocol.OPENAI, WireProtocol.ANTHROPIC]

# NOTE: after a retried request, closing the pool leaves a kept-alive socket to be closed by the
# garbage collector (seen with httpx 0.29 and httpcore 1.0.9 under the anyio test runner only).
RETRY_SOCKET_WARNING = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


async def _no_sleep(_seconds: float) -> None:
    return


def _endpoint(server: ProviderServer, protocol: WireProtocol) -> Endpoint:
    base = server.base_url + ("/v1" if protocol is WireProtocol.OPENAI else "")
    return Endpoint("test-provider", protocol, base)


def _client(server: ProviderServer, timeout: float = 5.0) -> ProviderClient:
    policy = EgressPolicy.of([], [f"127.0.0.1:{server.port}"])
    http = GuardedSession(policy, timeout=httpx.Timeout(timeout))
    return ProviderClient(http, RetryPolicy(attempts=3, base_delay=0.01))


def _request(model: str = "test-model", messages: tuple[Message, ...] | None = None) -> ChatRequest:
    return ChatRequest(
        model=model,
        system="You are a weather agent.",
        messages=messages or (Message("user", QUESTION),),
        tools=(WEATHER,),
    )


async def _collect(stream: AsyncIterator[TextDelta | Completion]) -> tuple[str, Completion]:
    text: list[str] = []
    async for event in stream:
        if isinstance(event, TextDelta):
            text.append(event.text)
        else:
            return "".join(text), event
    raise AssertionError("the stream ended without a completion")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_tool_call_round_trip(
    provider_server: ProviderServer, protocol: WireProtocol, streamed: bool
) -> None:
    provider_server.teach(QUESTION, [PlannedCall("get_weather", {"city": "Lisbon"})])
    async with _client(provider_server) as client:
        await _round_trip(client, _endpoint(provider_server, protocol), streamed=streamed)


async def _round_trip(client: ProviderClient, endpoint: Endpoint, *, streamed: bool) -> None:
    first = (
        (await _collect(client.stream(endpoint, _request(), KEY)))[1]
        if streamed
        else await client.complete(endpoint, _request(), KEY)
    )
    assert [call.name for call in first.tool_calls] == ["get_weather"]
    assert json.loads(first.tool_calls[0].arguments) == {"city": "Lisbon"}
    assert first.usage.input_tokens == 20

    follow_up = (
        Message("user", QUESTION),
        Message("assistant", "", first.tool_calls),
        Message("tool", '{"temperature": 19}', tool_call_id=first.tool_calls[0].id),
    )
    if streamed:
        text, second = await _collect(client.stream(endpoint, _request(messages=follow_up), KEY))
        assert text == second.text
    else:
        second = await client.complete(endpoint, _request(messages=follow_up), KEY)
    assert second.text == 'The tool answered: {"temperature": 19}'
    assert second.tool_calls == ()
    assert second.usage.output_tokens > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_key_goes_in_protocol_header(
    provider_server: ProviderServer, protocol: WireProtocol
) -> None:
    async with _client(provider_server) as client:
        await client.complete(_endpoint(provider_server, protocol), _request(), KEY)
    headers = provider_server.received[-1]["headers"]
    if protocol is WireProtocol.OPENAI:
        assert headers["authorization"] == f"Bearer {KEY.reveal()}"
    else:
        assert headers["x-api-key"] == KEY.reveal()
        assert headers["anthropic-version"] == "2023-06-01"
    assert KEY.reveal() not in json.dumps(provider_server.received[-1]["body"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rate_limit_is_retried(
    provider_server: ProviderServer, protocol: WireProtocol
) -> None:
    endpoint = _endpoint(provider_server, protocol)
    async with _client(provider_server) as client:
        completion = await client.complete(endpoint, _request("rate-limit-once"), KEY)
    assert completion.text == f"You said: {QUESTION}"
    assert len(provider_server.received) == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("model", "kind", "attempts"),
    [
        ("fail-500", FailureKind.UNAVAILABLE, 3),
        ("malformed", FailureKind.MALFORMED, 1),
    ],
)
async def test_failures_end_with_clear_error(
    provider_server: ProviderServer,
    protocol: WireProtocol,
    model: str,
    kind: FailureKind,
    attempts: int,
) -> None:
    with structlog.testing.capture_logs() as events:
        async with _client(provider_server) as client:
            with pytest.raises(ProviderFailure) as raised:
                await client.complete(_endpoint(provider_server, protocol), _request(model), KEY)
    assert raised.value.kind is kind
    assert "test-provider" in raised.value.message
    assert "boom" not in raised.value.message
    assert len(provider_server.received) == attempts
    failures = [event for event in events if event["event"] == "provider_call_failed"]
    retries = [event for event in events if event["event"] == "provider_call_retried"]
    assert [(e["provider"], e["kind"], e["attempts"]) for e in failures] == [
        ("test-provider", str(kind), attempts)
    ]
    assert len(retries) == attempts - 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_slow_provider_times_out(
    provider_server: ProviderServer, protocol: WireProtocol
) -> None:
    async with _client(provider_server, timeout=0.3) as client:
        with pytest.raises(ProviderFailure) as raised:
            await client.complete(_endpoint(provider_server, protocol), _request("slow"), KEY)
    assert raised.value.kind is FailureKind.TIMED_OUT


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_truncated_stream_is_malformed(
    provider_server: ProviderServer, protocol: WireProtocol
) -> None:
    provider_server.teach(QUESTION, [PlannedCall("get_weather", {"city": "Lisbon"})])
    endpoint = _endpoint(provider_server, protocol)
    async with _client(provider_server) as client:
        with pytest.raises(ProviderFailure) as raised:
            await _collect(client.stream(endpoint, _request("truncated"), KEY))
    assert raised.value.kind is FailureKind.MALFORMED
    # Named as the non-streamed failures are: by the provider, not by its protocol.
    assert raised.value.message.startswith("test-provider sent a malformed answer")


async def test_unlisted_provider_port_is_refused(provider_server: ProviderServer) -> None:
    policy = EgressPolicy.of([], [f"127.0.0.1:{provider_server.port + 1}"])
    endpoint = _endpoint(provider_server, WireProtocol.OPENAI)
    async with ProviderClient(GuardedSession(policy, timeout=httpx.Timeout(5.0))) as client:
        with pytest.raises(EgressRefused):
            await client.complete(endpoint, _request(), KEY)
    assert provider_server.received == []


def test_anthropic_body_groups_tool_results() -> None:
    from llero.command.providers import anthropic  # noqa: PLC0415

    calls = (ToolCall("a", "get_weather", '{"city": "A"}'), ToolCall("b", "get_weather", "{}"))
    body = anthropic.body(
        _request(
            messages=(
                Message("user", QUESTION),
                Message("assistant", "", calls),
                Message("tool", "1", tool_call_id="a"),
                Message("tool", "2", tool_call_id="b"),
            )
        ),
        stream=False,
    )
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in body["messages"][2]["content"]] == ["a", "b"]
    assert body["messages"][1]["content"][0]["input"] == {"city": "A"}
    assert body["system"] == "You are a weather agent."
