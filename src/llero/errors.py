"""Domain errors shared by every Llero package.

Services raise these; the web layer maps each ``code`` to an HTTP status and the same small error
body, and the CLI prints ``message`` on one line. ``message`` is shown to clients, so it names the
field and the problem but never echoes a value that could be secret.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Violation:
    """One problem with one input value, located by its path (``body.name``, ``$.unit``)."""

    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class LleroError(Exception):
    """Base of every expected failure; ``code`` is machine-readable and stable."""

    code = "error"

    def __init__(self, message: str, *, details: list[Violation] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidInput(LleroError):
    """The request was understood but a value in it is invalid."""

    code = "invalid_request"


class NotFound(LleroError):
    """The object does not exist, or the caller may not learn that it exists."""

    code = "not_found"


class Conflict(LleroError):
    """The change would break a uniqueness or reference rule."""

    code = "conflict"


class Refused(LleroError):
    """The change is valid in form but a rule of the domain forbids it now."""

    code = "refused"


def seconds_text(count: int) -> str:
    """Return ``count`` seconds in words for a message: "1 second", "30 seconds"."""
    return "1 second" if count == 1 else f"{count} seconds"


class RateLimited(LleroError):
    """Too many requests; ``retry_after`` is the number of seconds until one may pass again."""

    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests; retry after {seconds_text(retry_after)}")
        self.retry_after = retry_after


class SettingsError(LleroError):
    """A setting is missing, malformed or unsafe; raised before the server starts."""

    code = "invalid_setting"


class KeyFileError(LleroError):
    """A key file is missing, malformed or readable by other users."""

    code = "key_file"


@dataclass
class ErrorBody:
    """The one error shape every route returns."""

    error: str
    message: str
    request_id: str
    details: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
