"""Maps domain errors and framework errors to the one JSON error body.

Validation messages name the field path and the problem; the rejected value itself is never
echoed, because it may be a password or a key pasted into the wrong field.
"""

from typing import cast

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llero.academy.budgets import BudgetExceeded
from llero.access.permissions import LockedDown, NotAuthenticated, PermissionDenied
from llero.command.providers.base import FailureKind, ProviderFailure
from llero.errors import (
    Conflict,
    InvalidInput,
    LleroError,
    NotFound,
    RateLimited,
    Refused,
    Violation,
)
from llero.identity.errors import AuthenticationFailed, TooManyAttempts
from llero.identity.tokens import InvalidToken
from llero.mail import MailDeliveryFailed, MailUnavailable
from llero.vault.errors import (
    BackendUnavailable,
    CiphertextInvalid,
    UnsealRejected,
    UnsealThrottled,
    VaultSealed,
)
from llero.web.middleware import request_id_of
from llero.web.responses import error_body

log = structlog.get_logger("llero.web")

STATUS_BY_ERROR: dict[type[LleroError], int] = {
    NotAuthenticated: 401,
    AuthenticationFailed: 401,
    InvalidToken: 401,
    # RFC 4918's 423 Locked: the resource is fine but locked against change for now.
    LockedDown: 423,
    PermissionDenied: 403,
    UnsealRejected: 403,
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    Refused: 409,
    TooManyAttempts: 429,
    BackendUnavailable: 503,
    MailDeliveryFailed: 502,
    # The request was valid, and the provider behind Llero failed (RFC 9110 502 Bad Gateway).
    ProviderFailure: 502,
    MailUnavailable: 503,
    RateLimited: 429,
    UnsealThrottled: 429,
    # The server runs but cannot encrypt or decrypt until a key-encryption key is loaded.
    VaultSealed: 503,
}

CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


# Routes under this prefix speak OpenAI's API, so their errors take the shape of OpenAI's.
OPENAI_PREFIX = "/v1/"
# A used-up budget is what OpenAI calls an exhausted quota: 429 with this type and code, so
# OpenAI's clients raise the error their users already handle.
OPENAI_QUOTA_STATUS = 429
OPENAI_QUOTA_CODE = "insufficient_quota"


def _respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: list[Violation] | None = None,
    *,
    repeats: bool = False,
) -> JSONResponse:
    """Return the error response, in OpenAI's shape under OPENAI_PREFIX. ``repeats`` marks an
    error that a retry of the same request gets again."""
    request_id = request_id_of(request.scope)
    if not request.url.path.startswith(OPENAI_PREFIX):
        return JSONResponse(error_body(code, message, request_id, details), status_code=status)
    quota_exhausted = code == BudgetExceeded.code
    if quota_exhausted:
        status, code = OPENAI_QUOTA_STATUS, OPENAI_QUOTA_CODE
    body = {
        "error": {
            "message": message,
            "type": code,
            "code": code,
            "param": details[0].field if details else None,
        },
        "request_id": request_id,
    }
    response = JSONResponse(body, status_code=status)
    if repeats or (400 <= status < 500 and (status != 429 or quota_exhausted)):
        # OpenAI's clients retry a 409, a 429 or a 5xx unless this header is false. A refusal (a
        # used-up budget, a quarantined agent) returns the same error until something changes.
        response.headers["x-should-retry"] = "false"
    return response


async def handle_domain_error(request: Request, error: Exception) -> JSONResponse:
    error = cast(LleroError, error)  # registered for LleroError only
    status = next((code for kind, code in STATUS_BY_ERROR.items() if isinstance(error, kind)), 400)
    if isinstance(error, CiphertextInvalid):
        return _ciphertext_invalid(request, error)
    if isinstance(error, InvalidToken):
        # A token rejection names its reason (expired, bad signature, unknown key); the client
        # gets the generic answer, so it learns nothing by trying variants.
        log.info("auth:rejected", reason=error.reason)
        error = NotAuthenticated(error.reason)
    repeats = False
    if isinstance(error, ProviderFailure):
        if error.kind is FailureKind.TIMED_OUT:
            status = 504
        # Llero already retried the failures that a retry can fix. A provider that rejects the
        # request or returns malformed JSON does so again.
        repeats = not error.retryable
    response = _respond(request, status, error.code, error.message, error.details, repeats=repeats)
    if status == 401:
        # RFC 9110 requires a challenge with every 401, and RFC 6750 names the Bearer scheme.
        response.headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, RateLimited | UnsealThrottled | TooManyAttempts):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _ciphertext_invalid(request: Request, error: CiphertextInvalid) -> JSONResponse:
    """Return a 500 with only the request id for a stored ciphertext that does not open.

    Which check failed goes to the log only: it is a fault or tampering on the server side, and
    telling the client would help only someone who is changing the stored bytes.
    """
    log.error("vault:ciphertext_invalid", reason=str(error.reason), kek_id=error.kek_id)
    return _respond(request, 500, "internal_error", "internal error")


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location)


async def handle_validation_error(request: Request, error: Exception) -> JSONResponse:
    error = cast(RequestValidationError, error)  # registered for this type only
    problems = error.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return _respond(request, 400, "invalid_json", "the request body is not valid JSON")
    details = [
        Violation(_field_path(tuple(problem["loc"])), str(problem["msg"])) for problem in problems
    ]
    first = details[0]
    return _respond(request, 422, "invalid_request", f"{first.field}: {first.problem}", details)


async def handle_http_error(request: Request, error: Exception) -> JSONResponse:
    error = cast(StarletteHTTPException, error)  # registered for this type only
    code = CODE_BY_STATUS.get(error.status_code, "error")
    message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
    response = _respond(request, error.status_code, code, message.lower())
    if error.headers:
        response.headers.update(error.headers)
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LleroError, handle_domain_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
