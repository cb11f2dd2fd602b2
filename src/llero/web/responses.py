"""The one error body, built the same way by middleware, exception handlers and routes."""

import json
from typing import Any

from starlette.types import Send

from llero.errors import Violation

JSON_HEADERS = [(b"content-type", b"application/json")]


def error_body(
    code: str, message: str, request_id: str, details: list[Violation] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message, "request_id": request_id}
    if details:
        body["details"] = [violation.as_dict() for violation in details]
    return body


async def send_error(
    send: Send,
    status: int,
    *,
    code: str,
    message: str,
    request_id: str,
    details: list[Violation] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a complete JSON error response from ASGI middleware."""
    payload = json.dumps(error_body(code, message, request_id, details)).encode()
    headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send({"type": "http.response.body", "body": payload})
