"""The OpenAI chat completions protocol, also spoken by Ollama, vLLM, LM Studio and llama.cpp."""

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

PATH = "/chat/completions"


def headers(key: Secret[str] | None) -> dict[str, str]:
    """Return the request headers; a local server without keys gets no Authorization header."""
    if key is None:
        return {}
    return {"Authorization": f"Bearer {key.reveal()}"}


def body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """Return the JSON body of a chat completion request."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(_message(message) for message in request.messages)
    payload: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
    }
    if request.tools:
        payload["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": dict(tool.parameters),
                },
            }
            for tool in request.tools
        ]
    if stream:
        payload["stream"] = True
        # Without this the stream carries no token counts, and the call could not be metered.
        payload["stream_options"] = {"include_usage": True}
    return payload


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def parse(data: Any) -> Completion:
    """Return the completion in a non-streamed response; raise MalformedResponse when malformed."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
        calls = tuple(
            ToolCall(
                id=text_of(call["id"]),
                name=text_of(call["function"]["name"]),
                arguments=text_of(call["function"].get("arguments") or "{}"),
            )
            for call in message.get("tool_calls") or ()
        )
        return Completion(
            text=text_of(message.get("content") or ""),
            tool_calls=calls,
            usage=_usage(data.get("usage")),
            finish_reason=text_of(choice.get("finish_reason") or ""),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise MalformedResponse("no choices[0].message with text or tool calls") from None


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    return Usage(
        input_tokens=token_count(data.get("prompt_tokens")),
        output_tokens=token_count(data.get("completion_tokens")),
    )


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class StreamParser:
    """Turns the server-sent events of a streamed completion into text deltas and a Completion."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = ""
    done: bool = False

    def feed(self, _event: str, data: str) -> list[StreamEvent]:
        """Apply one event; return the text that arrived with it."""
        if data.strip() == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(data)
            return self._apply(chunk)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise MalformedResponse("a stream chunk is not a chat completion chunk") from None

    def _apply(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        if chunk.get("usage"):
            self.usage = _usage(chunk["usage"])
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                piece = text_of(delta["content"])
                self.text.append(piece)
                events.append(TextDelta(piece))
            for fragment in delta.get("tool_calls") or ():
                call = self.calls.setdefault(int(fragment["index"]), _PartialCall())
                call.id = fragment.get("id") or call.id
                function = fragment.get("function") or {}
                call.name = function.get("name") or call.name
                if function.get("arguments"):
                    call.arguments.append(text_of(function["arguments"]))
            if choice.get("finish_reason"):
                self.finish_reason = text_of(choice["finish_reason"])
        return events

    def finish(self) -> Completion:
        """Return the whole turn once the stream ended; raise when it ended too early."""
        if not self.done and not self.finish_reason:
            raise MalformedResponse("the stream ended before the answer was complete")
        calls = tuple(
            ToolCall(call.id, call.name, "".join(call.arguments) or "{}")
            for _index, call in sorted(self.calls.items())
        )
        if any(not call.id or not call.name for call in calls):
            raise MalformedResponse("a streamed tool call has no id or name")
        return Completion("".join(self.text), calls, self.usage, self.finish_reason)
