"""Remove secrets from a log event before any handler writes it.

Two rules apply to every event, whether structlog or a standard library logger (uvicorn,
SQLAlchemy) produced it:

- a value under a key that names a secret (``password``, ``api_key``, ``Authorization``,
  ``cookie``, ...; the words of ``llero.audit.redaction.is_sensitive_key``) becomes
  ``[redacted]``, with its whole subtree;
- inside every string, at any depth, credentials are replaced where they appear: provider keys
  (``sk-...``, ``sk-ant-...``), JWTs, Llero tokens (``llero_pat_...``), bearer and basic
  credentials, PEM private keys, passwords in URLs, and the value of ``name=value`` or
  ``name: value`` pairs whose name is one of the secret words. The message text, exception
  messages and formatted tracebacks are strings like any other.

Other objects are logged by their ``repr``, redacted the same way. Unlike the audit trail, logs
keep no hash of a removed value: logs are read by more people and shipped to more places.

NOTE: a secret in a shape not listed here, under a key that names no secret, is written as given.
So code must still not log values it cannot vouch for.
"""

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from llero.audit.events import AuditEvent
from llero.audit.redaction import is_sensitive_key

REDACTED = "[redacted]"
MAX_DEPTH = 12

# Keys with these last words describe a secret without being one: token_kind, api_token_id.
_DESCRIPTIVE_LAST_WORDS = frozenset({"count", "id", "ids", "kind", "type"})
_KEY_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

_CREDENTIAL = re.compile(
    r"""
      -----BEGIN[ A-Z]*PRIVATE\ KEY-----.*?(?:-----END[ A-Z]*PRIVATE\ KEY-----|\Z)
    | (?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}
    | (?<![A-Za-z0-9_-])(?:sk|pk|rk)[-_][A-Za-z0-9_-]{8,}    # OpenAI, Anthropic, Stripe keys
    | (?<![A-Za-z0-9])llero_[a-z]{2,8}_[A-Za-z0-9]{16,}      # Llero's opaque tokens
    | eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*  # JSON Web Tokens
    | (?:ghp|gho|ghu|ghs|ghr|github_pat)_\w{16,}              # GitHub tokens
    | xox[abprs]-[A-Za-z0-9-]{8,}                             # Slack tokens
    | AKIA[0-9A-Z]{16}                                        # AWS access key ids
    | AIza[0-9A-Za-z_-]{30,}                                  # Google API keys
    """,
    re.VERBOSE | re.DOTALL,
)

# name=value and name: value, as in query strings, headers, JSON text and messages.
_ASSIGNMENT = re.compile(
    r"""
    (?P<name>
      [A-Za-z0-9_.-]*
      (?i:password|passwd|passphrase|secret|token|api[_-]?key|authorization|cookie
         |credential|private[_-]?key|session[_-]?id)
      [A-Za-z0-9_-]*
    )
    (?P<separator>["']?\s*[:=]\s*)
    (?P<value>"[^"]*"|'[^']*'|[^\s&,;"']+)
    """,
    re.VERBOSE,
)

# The password of scheme://user:password@host.
_URL_PASSWORD = re.compile(r"(?P<user>://[^/\s:@]*):[^/\s@]+@")


def _redact_assignment(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in {'"', "'"} else ""
    return f"{match['name']}{match['separator']}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """Return ``text`` with every credential it contains replaced by ``[redacted]``."""
    text = _CREDENTIAL.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(rf"\g<user>:{REDACTED}@", text)
    return _ASSIGNMENT.sub(_redact_assignment, text)


def is_secret_key(key: str) -> bool:
    words = [word.lower() for word in _KEY_WORDS.split(key) if word]
    if words and words[-1] in _DESCRIPTIVE_LAST_WORDS:
        return False
    return is_sensitive_key(key)


def redact_value(value: Any, depth: int = 0) -> Any:
    """Return ``value`` with secrets removed: dicts and lists are copied, never changed."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if depth >= MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, Mapping):
        return {
            key: _redact_item(key, item, depth + 1)
            for key, item in value.items()  # keys are kept: they name, they do not hold
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, depth + 1) for item in value]
    return redact_text(_as_text(value))


def _as_text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return repr(value)


def _redact_item(key: object, item: Any, depth: int) -> Any:
    if item is not None and isinstance(key, str) and is_secret_key(key):
        return REDACTED
    return redact_value(item, depth)


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: redact every value of the event, the message included.

    A message that is exactly one of the audit trail's event names is kept: names such as
    ``token:family_revoked`` read as a name and a value, and were logged as ``token:[redacted]``.
    """
    return {
        key: value if key == "event" and value in _EVENT_NAMES else _redact_item(key, value, 0)
        for key, value in event.items()
    }


_EVENT_NAMES = frozenset(AuditEvent)
