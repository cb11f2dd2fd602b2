"""Call a provider: one HTTP exchange per turn, retries with backoff, streaming, size limits.

The HTTP session is an egress-guarded one (``llero.egress.GuardedSession``), so a provider URL
is checked again on the address it resolves to whenever a connection opens.
"""

import codecs
import json
import random
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType
from typing import Any

import aiohttp
import anyio

from llero.command.providers import anthropic, openai
from llero.command.providers.base import (
    ChatRequest,
    Completion,
    FailureKind,
    MalformedResponse,
    ProviderFailure,
    StreamEvent,
    TextDelta,
    malformed,
)
from llero.crypto import Secret
from llero.egress import GuardedSession
from llero.logs import get_logger

log = get_logger("llero.command")

# A chat response is a few kilobytes; a provider (or something posing as one) sending more than
# this is cut off rather than read into memory.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_STREAM_LINE_BYTES = 1024 * 1024
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_ERROR_BYTES = 64 * 1024


class WireProtocol(StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI = "openai"


_ADAPTERS: dict[WireProtocol, ModuleType] = {
    WireProtocol.ANTHROPIC: anthropic,
    WireProtocol.OPENAI: openai,
}


@dataclass(frozen=True)
class Endpoint:
    """Where a provider listens and which protocol it speaks; ``name`` appears in errors."""

    name: str
    protocol: WireProtocol
    base_url: str

    def url(self) -> str:
        path: str = _ADAPTERS[self.protocol].PATH
        return self.base_url.rstrip("/") + path


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to send a request again after a retryable failure."""

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, failure: ProviderFailure) -> float:
        """Return the wait before attempt ``attempt + 1``: Retry-After if sent, else backoff."""
        if failure.retry_after is not None:
            return min(failure.retry_after, self.max_delay)
        backoff = self.base_delay * 2**attempt
        # Full jitter, so clients that failed together do not retry together. Not a secret, so the
        # standard generator is fine (ruff S311, bandit B311).
        return min(random.uniform(0, backoff), self.max_delay)  # noqa: S311  # nosec B311


Sleep = Callable[[float], Awaitable[None]]


class ProviderClient:
    """Send chat requests to providers over one shared, egress-guarded HTTP session."""

    def __init__(
        self, http: GuardedSession, retry: RetryPolicy | None = None, sleep: Sleep = anyio.sleep
    ) -> None:
        self._http = http
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    async def __aenter__(self) -> "ProviderClient":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session and its connections."""
        await self._http.aclose()

    async def complete(
        self, endpoint: Endpoint, request: ChatRequest, key: Secret[str] | None
    ) -> Completion:
        """Return the model's turn; raise ProviderFailure or EgressRefused."""
        adapter = _ADAPTERS[endpoint.protocol]
        payload = adapter.body(request, stream=False)
        for attempt in range(self._retry.attempts):
            try:
                data = await self._exchange(endpoint, adapter, payload, key)
                try:
                    completion: Completion = adapter.parse(data)
                except MalformedResponse as error:
                    raise malformed(endpoint.name, str(error)) from None
            except ProviderFailure as failure:
                if not failure.retryable or attempt + 1 == self._retry.attempts:
                    _log_failure(endpoint, failure, attempt + 1)
                    raise
                await self._retry_after_pause(endpoint, attempt, failure)
            else:
                return completion
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def stream(
        self, endpoint: Endpoint, request: ChatRequest, key: Secret[str] | None
    ) -> AsyncGenerator[StreamEvent]:
        """Yield text deltas as they arrive, then the whole turn as a Completion.

        A failure before the first event is retried like ``complete``; once text has reached
        the caller, a failure ends the stream with ProviderFailure.
        """
        adapter = _ADAPTERS[endpoint.protocol]
        payload = adapter.body(request, stream=True)
        for attempt in range(self._retry.attempts):
            started = False
            try:
                async for event in self._stream_once(endpoint, adapter, payload, key):
                    started = True
                    yield event
            except ProviderFailure as failure:
                if started or not failure.retryable or attempt + 1 == self._retry.attempts:
                    _log_failure(endpoint, failure, attempt + 1)
                    raise
                await self._retry_after_pause(endpoint, attempt, failure)
            else:
                return

    async def _retry_after_pause(
        self, endpoint: Endpoint, attempt: int, failure: ProviderFailure
    ) -> None:
        delay = self._retry.delay(attempt, failure)
        log.info(
            "provider_call_retried",
            provider=endpoint.name,
            kind=str(failure.kind),
            status=failure.status,
            attempt=attempt + 1,
            delay_seconds=round(delay, 3),
        )
        await self._sleep(delay)

    async def _exchange(
        self,
        endpoint: Endpoint,
        adapter: ModuleType,
        payload: dict[str, Any],
        key: Secret[str] | None,
    ) -> Any:
        try:
            async with self._http.post(
                endpoint.url(), json=payload, headers=adapter.headers(key)
            ) as response:
                await _check_status(endpoint, response)
                raw = await _read_capped(endpoint, response)
        except TimeoutError:
            raise _timed_out(endpoint) from None
        except aiohttp.ClientError as error:
            raise _unreachable(endpoint, error) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise malformed(endpoint.name, "the body is not JSON") from None

    async def _stream_once(
        self,
        endpoint: Endpoint,
        adapter: ModuleType,
        payload: dict[str, Any],
        key: Secret[str] | None,
    ) -> AsyncIterator[StreamEvent]:
        parser = adapter.StreamParser()
        try:
            async with self._http.post(
                endpoint.url(), json=payload, headers=adapter.headers(key)
            ) as response:
                await _check_status(endpoint, response)
                async for batch in _server_sent_events(endpoint, response.content.iter_any()):
                    # The text of the events that arrived together is relayed as one piece, so
                    # a fast stream costs one relay step per read, not one per token.
                    text: list[str] = []
                    for event_name, data in batch:
                        for event in parser.feed(event_name, data):
                            if isinstance(event, TextDelta):
                                text.append(event.text)
                                continue
                            if text:
                                yield TextDelta("".join(text))
                                text = []
                            yield event
                        if parser.done:
                            break
                    if text:
                        yield TextDelta("".join(text))
                    if parser.done:
                        break
            completion = parser.finish()
        except TimeoutError:
            raise _timed_out(endpoint) from None
        except aiohttp.ClientError as error:
            raise _unreachable(endpoint, error) from None
        except MalformedResponse as error:
            raise malformed(endpoint.name, str(error)) from None
        yield completion


def _log_failure(endpoint: Endpoint, failure: ProviderFailure, attempts: int) -> None:
    # The kind and status only: the provider's own error text can echo the request.
    log.warning(
        "provider_call_failed",
        provider=endpoint.name,
        kind=str(failure.kind),
        status=failure.status,
        attempts=attempts,
    )


async def _check_status(endpoint: Endpoint, response: aiohttp.ClientResponse) -> None:
    status = response.status
    if status < 300:
        return
    # Reading a small error body lets the connection be reused; its text is never shown.
    await _read_capped(endpoint, response, MAX_ERROR_BYTES)
    if 300 <= status < 400:
        raise ProviderFailure(
            FailureKind.REJECTED,
            f"{endpoint.name} answered with a redirect ({status}), which Llero does not follow",
            status=status,
        )
    if status == 429:
        raise ProviderFailure(
            FailureKind.RATE_LIMITED,
            f"{endpoint.name} is rate limiting this key (429)",
            status=status,
            retry_after=_retry_after(response),
        )
    if status in {401, 403}:
        raise ProviderFailure(
            FailureKind.UNAUTHORIZED,
            f"{endpoint.name} refused the key ({status}); check the secret granted to the agent",
            status=status,
        )
    if status >= 500:
        raise ProviderFailure(
            FailureKind.UNAVAILABLE,
            f"{endpoint.name} failed with {status}",
            status=status,
            retry_after=_retry_after(response),
        )
    raise ProviderFailure(
        FailureKind.REJECTED, f"{endpoint.name} rejected the request ({status})", status=status
    )


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


async def _read_capped(
    endpoint: Endpoint, response: aiohttp.ClientResponse, limit: int = MAX_RESPONSE_BYTES
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    # iter_any yields what has arrived, decompressed, so the limit holds for a compressed body.
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise malformed(endpoint.name, f"the response is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _server_sent_events(
    endpoint: Endpoint, reads: AsyncIterable[bytes]
) -> AsyncIterator[list[tuple[str, str]]]:
    """Yield the (event name, data) pairs of the server-sent events that each of ``reads``
    completes.

    Lines end with CRLF, LF or CR, as the event-stream format allows; a line longer than
    MAX_STREAM_LINE_BYTES characters is rejected before it is complete.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    partial = ""
    event_name = ""
    data: list[str] = []
    async for chunk in reads:
        text = partial + decoder.decode(chunk)
        # A CR at the end may be the first half of a CRLF, so it waits for the next read.
        trailing_cr = "\r" if text.endswith("\r") else ""
        lines = _LINE_BREAK.split(text[: len(text) - len(trailing_cr)])
        partial = lines.pop() + trailing_cr
        if len(partial) > MAX_STREAM_LINE_BYTES:
            raise malformed(endpoint.name, "a stream line is too long")
        events: list[tuple[str, str]] = []
        for line in lines:
            if len(line) > MAX_STREAM_LINE_BYTES:
                raise malformed(endpoint.name, "a stream line is too long")
            if not line:
                if data:
                    events.append((event_name, "\n".join(data)))
                event_name, data = "", []
            elif line.startswith(":"):
                continue
            elif line.startswith("event:"):
                event_name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if events:
            yield events
    last = (partial + decoder.decode(b"", final=True)).rstrip("\r")
    if last.startswith("data:"):
        data.append(last[5:].removeprefix(" "))
    if data:
        yield [(event_name, "\n".join(data))]


def _timed_out(endpoint: Endpoint) -> ProviderFailure:
    return ProviderFailure(FailureKind.TIMED_OUT, f"{endpoint.name} did not answer in time")


def _unreachable(endpoint: Endpoint, error: Exception) -> ProviderFailure:
    # EgressRefused is not a transport error: it reaches the caller unchanged.
    return ProviderFailure(
        FailureKind.UNAVAILABLE, f"{endpoint.name} could not be reached ({type(error).__name__})"
    )
