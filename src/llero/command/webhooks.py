"""Run a webhook tool: POST the arguments as JSON, signed, under the egress rules.

The signature lets the tool's server check that the call came from this Llero and was not
replayed later: ``X-Llero-Signature: t=<unix time>,v1=<hex HMAC-SHA256>`` over
``<t>.<body>`` with the webhook signing secret granted to the agent. A receiver recomputes the
HMAC, compares in constant time and rejects a ``t`` older than a few minutes.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from llero.crypto import Secret
from llero.egress import EgressRefused

SIGNATURE_HEADER = "X-Llero-Signature"
CALL_ID_HEADER = "X-Llero-Tool-Call-Id"
# A tool result goes back into the model's context, where a few hundred kilobytes is already
# more than any model reads usefully.
MAX_RESULT_BYTES = 256 * 1024


@dataclass(frozen=True)
class WebhookResult:
    """The tool's response as text for the model, or the reason it is unusable."""

    ok: bool
    content: str


def sign(key: Secret[str], timestamp: int, body: bytes) -> str:
    """Return the signature header value for ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(key.reveal().encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(key: Secret[str], header: str, body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """Return whether ``header`` signs ``body`` with ``key`` within ``tolerance`` seconds."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(key, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


async def call_webhook(
    http: httpx.AsyncClient,
    url: str,
    *,
    call_id: str,
    tool_name: str,
    arguments: Mapping[str, Any],
    key: Secret[str] | None,
    clock: Callable[[], float] = time.time,
) -> WebhookResult:
    """POST one tool call to ``url`` and return the response; raise EgressRefused when not allowed.

    Any other failure (timeout, refused connection, error status, oversized response) is a
    WebhookResult with ok False, which the model is told about like any tool error.
    """
    body = json.dumps(
        {"tool": tool_name, "call_id": call_id, "arguments": arguments},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    headers = {"Content-Type": "application/json", CALL_ID_HEADER: call_id}
    if key is not None:
        headers[SIGNATURE_HEADER] = sign(key, int(clock()), body)
    try:
        async with http.stream("POST", url, content=body, headers=headers) as response:
            if response.status_code >= 300:
                return WebhookResult(False, f"the tool answered with HTTP {response.status_code}")
            content = await _read(response)
    except EgressRefused:
        raise
    except httpx.TimeoutException:
        return WebhookResult(False, "the tool did not answer in time")
    except httpx.TransportError:
        return WebhookResult(False, "the tool could not be reached")
    if content is None:
        return WebhookResult(False, f"the tool's answer is larger than {MAX_RESULT_BYTES} bytes")
    return WebhookResult(True, content)


async def _read(response: httpx.Response) -> str | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESULT_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")
