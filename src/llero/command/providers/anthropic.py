"""The Anthropic messages protocol."""

import json
from dataclasses import dataclass, field
from typing import Any

from llero.command.providers.base import (
    ChatRequest,
    Completion,
    MalformedResponse,
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    Usage,
    text_of,
    token_count,
)
from llero.crypto import Secret

PATH = "/v1/messages"
API_VERSION = "2023-06-01"


def headers(key: Secret[str] | None) -> dict[str, str]:
    """Return the request headers, with the key when there is one."""
    result = {"anthropic-version": API_VERSION}
    if key is not None:
        result["x-api-key"] = key.reveal()
    return result


def body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """Return the JSON body of a messages request."""
    payload: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": _messages(request.messages),
    }
    if request.system:
        payload["system"] = request.system
    if request.tools:
        payload["tools"] = [
            {
                "name": tool.name,
                "description": tool.description,
                "input_schema": dict(tool.parameters),
            }
            for tool in request.tools
        ]
    if stream:
        payload["stream"] = True
    return payload


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    # Tool results go back as tool_result blocks of a user turn, and the API wants the results
    # of one assistant turn together in one user turn.
    result: list[dict[str, Any]] = []
    for message in messages:
        blocks = _blocks(message)
        role = "assistant" if message.role == "assistant" else "user"
        if result and result[-1]["role"] == role == "user" and message.role == "tool":
            result[-1]["content"].extend(blocks)
        else:
            result.append({"role": role, "content": blocks})
    return result


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        ]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
        )
    return blocks


def _input(arguments: str) -> Any:
    # The model wrote these arguments; they were validated against the tool's schema before
    # the tool ran, so they are a JSON object.
    try:
        return json.loads(arguments)
    except ValueError:
        return {}


def parse(data: Any) -> Completion:
    """Return the completion in a non-streamed response; raise MalformedResponse when malformed."""
    try:
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in data["content"]:
            if block["type"] == "text":
                text.append(text_of(block["text"]))
            elif block["type"] == "tool_use":
                arguments = json.dumps(_object(block["input"]), ensure_ascii=False)
                calls.append(ToolCall(text_of(block["id"]), text_of(block["name"]), arguments))
        usage = data.get("usage") or {}
        return Completion(
            text="".join(text),
            tool_calls=tuple(calls),
            usage=Usage(
                token_count(usage.get("input_tokens")), token_count(usage.get("output_tokens"))
            ),
            finish_reason=text_of(data.get("stop_reason") or ""),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise MalformedResponse("no content blocks with text or tool use") from None


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


@dataclass
class _Block:
    kind: str
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


@dataclass
class StreamParser:
    """Turns the server-sent events of a streamed message into text deltas and a Completion."""

    blocks: dict[int, _Block] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str = ""
    done: bool = False

    def feed(self, event: str, data: str) -> list[StreamEvent]:
        """Apply one event; return the text that arrived with it."""
        try:
            payload = json.loads(data)
            return self._apply(event or payload.get("type", ""), payload)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            problem = f"the stream event {event!r} does not match the protocol"
            raise MalformedResponse(problem) from None

    def _apply(self, event: str, payload: dict[str, Any]) -> list[StreamEvent]:
        if event == "message_start":
            usage = payload["message"].get("usage") or {}
            self.input_tokens = token_count(usage.get("input_tokens"))
            self.output_tokens = token_count(usage.get("output_tokens"))
        elif event == "content_block_start":
            block = payload["content_block"]
            self.blocks[int(payload["index"])] = _Block(
                block["type"], block.get("id", ""), block.get("name", "")
            )
            if block["type"] == "text" and block.get("text"):
                return self._append_text(int(payload["index"]), text_of(block["text"]))
        elif event == "content_block_delta":
            delta = payload["delta"]
            if delta["type"] == "text_delta":
                return self._append_text(int(payload["index"]), text_of(delta["text"]))
            if delta["type"] == "input_json_delta":
                self.blocks[int(payload["index"])].parts.append(text_of(delta["partial_json"]))
        elif event == "message_delta":
            self.stop_reason = text_of(payload["delta"].get("stop_reason") or self.stop_reason)
            usage = payload.get("usage") or {}
            if "output_tokens" in usage:
                self.output_tokens = token_count(usage["output_tokens"])
        elif event == "message_stop":
            self.done = True
        elif event == "error":
            raise MalformedResponse("the stream ended with an error event")
        return []

    def _append_text(self, index: int, piece: str) -> list[StreamEvent]:
        self.blocks[index].parts.append(piece)
        return [TextDelta(piece)]

    def finish(self) -> Completion:
        """Return the whole turn once the stream ended; raise when it ended too early."""
        if not self.done:
            raise MalformedResponse("the stream ended before message_stop")
        text: list[str] = []
        calls: list[ToolCall] = []
        for _index, block in sorted(self.blocks.items()):
            if block.kind == "text":
                text.append("".join(block.parts))
            elif block.kind == "tool_use":
                arguments = "".join(block.parts) or "{}"
                calls.append(ToolCall(block.id, block.name, arguments))
        usage = Usage(self.input_tokens, self.output_tokens)
        return Completion("".join(text), tuple(calls), usage, self.stop_reason)
