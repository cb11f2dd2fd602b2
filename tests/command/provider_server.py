"""A local provider server for tests: speaks OpenAI chat completions and Anthropic messages.

It answers a question it was taught with that question's tool calls, answers a turn that ends
with tool results with a short text that quotes them, and misbehaves on purpose when the model
name asks for it: ``slow``, ``fail-500``, ``malformed``, ``rate-limit-once``, ``unknown-tool``,
``loop`` (calls the first tool forever) and ``truncated`` (a stream that stops mid-answer).
``long`` answers with LONG_ANSWER, 15,000 characters of text.
"""

import asyncio
import gc
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llero.config.settings import Settings

TEXT_CHUNK = 8
LONG_ANSWER = "word " * 3000
ARGUMENT_CHUNK = 12


@dataclass(frozen=True)
class PlannedCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class Turn:
    """What the server decided to answer: text, tool calls, or a failure mode."""

    text: str = ""
    calls: list[PlannedCall] = field(default_factory=list)


@dataclass
class ProviderServer:
    """The server's knowledge and what it received; ``port`` is set once it listens."""

    answers: dict[str, list[PlannedCall]] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    delay: float = 0.0
    _rate_limited: set[str] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def teach(self, question: str, calls: list[PlannedCall]) -> None:
        self.answers[question] = calls

    # --- Deciding the turn ---------------------------------------------------------------------

    def decide(self, model: str, last_user: str, tool_results: list[str], tools: list[str]) -> Turn:
        if model == "unknown-tool":
            return Turn(calls=[PlannedCall("no_such_tool", {})])
        if model == "long":
            return Turn(text=LONG_ANSWER)
        if model == "loop" and tools:
            return Turn(calls=[PlannedCall(tools[0], {})])
        if tool_results:
            return Turn(text="The tool answered: " + " | ".join(tool_results))
        calls = self.answers.get(last_user)
        if calls is None:
            return Turn(text=f"You said: {last_user}")
        return Turn(calls=calls)

    # --- The app -------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )

    async def _prelude(
        self, request: Request, protocol: str
    ) -> tuple[dict[str, Any], Response | None]:
        payload = await request.json()
        self.received.append(
            {"protocol": protocol, "headers": dict(request.headers), "body": payload}
        )
        model = payload.get("model", "")
        if self.delay or model == "slow":
            await asyncio.sleep(self.delay or 3.0)
        if model == "fail-500":
            return payload, JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if model == "rate-limit-once" and protocol not in self._rate_limited:
            self._rate_limited.add(protocol)
            return payload, JSONResponse(
                {"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0"}
            )
        if model == "malformed":
            return payload, Response(b'{"choices": [', media_type="application/json")
        return payload, None

    async def _openai(self, request: Request) -> Response:
        payload, early = await self._prelude(request, "openai")
        if early is not None:
            return early
        messages = payload["messages"]
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        results = _trailing(messages, lambda m: m["role"] == "tool", lambda m: m["content"])
        tools = [tool["function"]["name"] for tool in payload.get("tools", [])]
        turn = self.decide(payload["model"], last_user, results, tools)
        if payload.get("stream"):
            return _sse(_openai_chunks(payload["model"], turn))
        return JSONResponse(_openai_body(payload["model"], turn))

    async def _anthropic(self, request: Request) -> Response:
        payload, early = await self._prelude(request, "anthropic")
        if early is not None:
            return early
        messages = payload["messages"]
        last = messages[-1]
        results: list[str] = []
        last_user = ""
        if isinstance(last["content"], list):
            results = [b["content"] for b in last["content"] if b["type"] == "tool_result"]
        for message in reversed(messages):
            if message["role"] == "user":
                content = message["content"]
                texts = (
                    [content]
                    if isinstance(content, str)
                    else [b["text"] for b in content if b["type"] == "text"]
                )
                if texts:
                    last_user = texts[0]
                    break
        tools = [tool["name"] for tool in payload.get("tools", [])]
        turn = self.decide(payload["model"], last_user, results, tools)
        if payload.get("stream"):
            return _sse(_anthropic_events(payload["model"], turn), named=True)
        return JSONResponse(_anthropic_body(payload["model"], turn))


def _trailing(messages: list[dict[str, Any]], match: Any, value: Any) -> list[str]:
    found: list[str] = []
    for message in reversed(messages):
        if not match(message):
            break
        found.insert(0, value(message))
    return found


def _json(value: object) -> str:
    # Unescaped, so that non-ASCII text crosses the wire as multi-byte UTF-8.
    return json.dumps(value, ensure_ascii=False)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


# --- OpenAI shapes -------------------------------------------------------------------------------


def _openai_body(model: str, turn: Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.calls:
        message["tool_calls"] = [
            {
                "id": f"call_{index}",
                "type": "function",
                "function": {"name": call.name, "arguments": _json(call.arguments)},
            }
            for index, call in enumerate(turn.calls)
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if turn.calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": _tokens(turn.text) + len(turn.calls)},
    }


def _openai_chunks(model: str, turn: Turn) -> Iterator[tuple[str, str]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[str, str]:
        body = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return "", _json(body)

    yield chunk({"role": "assistant", "content": ""})
    for start in range(0, len(turn.text), TEXT_CHUNK):
        yield chunk({"content": turn.text[start : start + TEXT_CHUNK]})
    for index, call in enumerate(turn.calls):
        arguments = _json(call.arguments)
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": f"call_{index}",
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
        )
        for start in range(0, len(arguments), ARGUMENT_CHUNK):
            piece = arguments[start : start + ARGUMENT_CHUNK]
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    if model == "truncated":
        return
    yield chunk({}, "tool_calls" if turn.calls else "stop")
    usage = {"prompt_tokens": 20, "completion_tokens": _tokens(turn.text) + len(turn.calls)}
    yield "", _json({"id": "chatcmpl-test", "choices": [], "usage": usage})
    yield "", "[DONE]"


# --- Anthropic shapes ----------------------------------------------------------------------------


def _anthropic_body(model: str, turn: Turn) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    for index, call in enumerate(turn.calls):
        content.append(
            {"type": "tool_use", "id": f"toolu_{index}", "name": call.name, "input": call.arguments}
        )
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if turn.calls else "end_turn",
        "usage": {"input_tokens": 20, "output_tokens": _tokens(turn.text) + len(turn.calls)},
    }


def _anthropic_events(model: str, turn: Turn) -> Iterator[tuple[str, str]]:
    def event(name: str, body: dict[str, Any]) -> tuple[str, str]:
        return name, _json({"type": name, **body})

    message = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "usage": {"input_tokens": 20, "output_tokens": 1},
    }
    yield event("message_start", {"message": message})
    index = 0
    if turn.text:
        yield event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        for start in range(0, len(turn.text), TEXT_CHUNK):
            piece = turn.text[start : start + TEXT_CHUNK]
            yield event(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}}
            )
        yield event("content_block_stop", {"index": 0})
        index = 1
    for offset, call in enumerate(turn.calls):
        block = {"type": "tool_use", "id": f"toolu_{offset}", "name": call.name, "input": {}}
        yield event("content_block_start", {"index": index, "content_block": block})
        arguments = _json(call.arguments)
        for start in range(0, len(arguments), ARGUMENT_CHUNK):
            delta = {
                "type": "input_json_delta",
                "partial_json": arguments[start : start + ARGUMENT_CHUNK],
            }
            yield event("content_block_delta", {"index": index, "delta": delta})
        yield event("content_block_stop", {"index": index})
        index += 1
    if model == "truncated":
        return
    stop = "tool_use" if turn.calls else "end_turn"
    usage = {"output_tokens": _tokens(turn.text) + len(turn.calls)}
    yield event("message_delta", {"delta": {"stop_reason": stop}, "usage": usage})
    yield event("message_stop", {})


def _sse(events: Iterator[tuple[str, str]], *, named: bool = False) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for name, data in events:
            prefix = f"event: {name}\n" if named and name else ""
            yield f"{prefix}data: {data}\n\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream")


# --- Running it ----------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        return


def serve(provider: ProviderServer) -> Iterator[ProviderServer]:
    """Run ``provider`` on 127.0.0.1 in a thread while the generator is suspended."""
    config = uvicorn.Config(provider.app(), host="127.0.0.1", port=0, log_level="warning")
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the provider test server did not start")
        time.sleep(0.01)
    provider.port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def running_provider() -> Iterator[ProviderServer]:
    """Serve a provider for one test, then collect what the test left behind.

    Collected now, while the test's warnings filters still apply, rather than at a random
    later point in another test.
    """
    yield from serve(ProviderServer())
    gc.collect()


def allowing_provider(settings: Settings, provider_server: ProviderServer) -> Settings:
    """Return ``settings`` with ``provider_server``'s endpoint on the egress allowlist."""
    endpoint = f"127.0.0.1:{provider_server.port}"
    return settings.model_copy(update={"egress_allowed_endpoints": [endpoint]})
