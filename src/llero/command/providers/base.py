"""The shared language of provider adapters: messages, tools, tool calls, usage and failures.

Adapters translate these to and from one provider's wire format and nothing else; the HTTP
exchange, retries and streaming belong to ``llero.command.providers.client``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from llero.errors import LleroError


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: name, description and JSON Schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for; ``arguments`` is the JSON text exactly as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Message:
    """One turn of a conversation.

    ``tool_calls`` is set on assistant turns that call tools; ``tool_call_id`` on the tool turn
    that answers one of them.
    """

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    """A request for the model's next turn."""

    model: str
    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 1024


@dataclass(frozen=True)
class Usage:
    """Tokens counted by the provider for one call."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """The model's whole turn: its text, the tools it calls, and what the call cost."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = ""


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's text while it streams."""

    text: str


StreamEvent = TextDelta | Completion


class FailureKind(StrEnum):
    MALFORMED = "malformed"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"


# Failures that may succeed when the same request is sent again a little later.
RETRYABLE = frozenset({FailureKind.RATE_LIMITED, FailureKind.UNAVAILABLE, FailureKind.TIMED_OUT})


class ProviderFailure(LleroError):
    """A provider call that did not give a usable answer.

    The message names the provider and the kind of failure. It never carries the provider's
    error text verbatim: that text can echo the request, key prefixes included.
    """

    code = "provider_failed"

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


def token_count(value: Any) -> int:
    """Return a provider's token count: None as 0; raise ValueError unless a non-negative int."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("a token count must be a non-negative integer")
    return value


def text_of(value: Any) -> str:
    """Return ``value`` when it is a string; raise TypeError otherwise."""
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


class MalformedResponse(Exception):
    """A provider response that breaks its wire protocol. The protocol modules raise it, and the
    client turns it into a ProviderFailure that names the provider."""


def malformed(provider: str, problem: str) -> ProviderFailure:
    return ProviderFailure(FailureKind.MALFORMED, f"{provider} sent a malformed answer: {problem}")
