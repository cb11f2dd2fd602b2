"""Turn an event detail into bounded, canonical JSON that contains no secret.

A value is replaced by its keyed hash, ``hmac-sha256:<hex>`` under the detail-hash key, when

- its key, or the key of any object or list it sits in, names a secret (``password``,
  ``api_key``, ``refreshToken``, ``X-Auth-Token``, ``code``, ``seed``, ...), matched on the
  words of the key whatever its case or separators. Below such a key every string, number and
  boolean is hashed on its own, so the keys and the shape stay readable; or
- it is a string in the shape of a well-known credential (``sk-...``, ``Bearer ...``, a JWT, a
  PEM block, ...), under any key.

An investigator who holds a suspected value gets the same hash from ``audit_hash`` and finds the
records that contain it, while a reader of the table without the key cannot test guesses. The
hash of a number or boolean is the hash of its JSON text, so the code 123456 and the string
"123456" hash alike. None stays None: it shows that no value was given.

NOTE: only these two rules protect a detail. A secret under an innocent key, in a shape not
listed below, is stored as given: callers must not put free text from a client into a detail.
"""

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from llero.audit.encoding import make_compact_encoder
from llero.audit.keys import AuditKeys
from llero.crypto import keyed_hash

# The canonical detail text is ASCII, so this is both its length in characters (which the
# database's CHECK constraint counts) and in bytes.
DETAIL_MAX_BYTES = 4096
DETAIL_MAX_DEPTH = 8
DETAIL_KEY_MAX = 64

HASH_PREFIX = "hmac-sha256:"

# A key is split into words at separators and at lower-to-upper case changes, and is sensitive
# when its words joined contain one of these.
_SENSITIVE_FRAGMENTS = (
    "accesskey",
    "apikey",
    "authorization",
    "bearer",
    "cookie",
    "credential",
    "encryptionkey",
    "masterkey",
    "passphrase",
    "passwd",
    "password",
    "privatekey",
    "secret",
    "sessionid",
    "signingkey",
    "token",
)
# Words that are sensitive on their own: "seed" and "otp_seed", but not "seeded" or "postcode".
_SENSITIVE_WORDS = frozenset(
    {"code", "hotp", "jwt", "mnemonic", "otp", "pin", "pwd", "salt", "seed", "totp"}
)
# Keys too general to match as a word: "key" and "auth" alone usually hold a credential, but
# "key_id" and "auth_method" do not.
_SENSITIVE_WHOLE_KEYS = frozenset({"auth", "key"})
# A "code" after one of these words is a status, not a one-time code. Any other "code", such as
# "mfa_code" or "recovery_code", is treated as secret.
_PLAIN_CODE_QUALIFIERS = frozenset(
    {"country", "currency", "error", "exit", "http", "language", "reason", "response", "status"}
)
_PLAIN_PATH_KEY = re.compile(r"[A-Za-z_]{1,32}")
_WORD_BOUNDARY = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

# Prefixes and shapes of credentials that providers and protocols issue.
_CREDENTIAL_SHAPE = re.compile(
    r"""
    (?<![A-Za-z0-9_-])                           # at the start of a word, so "task-x" is not "sk-x"
    (?:
      (?:sk|pk|rk)[-_][A-Za-z0-9_-]{8,}          # OpenAI, Anthropic, Stripe style API keys
    | (?:ghp|gho|ghu|ghs|ghr|github_pat)_\w{16,} # GitHub tokens
    | xox[abprs]-[A-Za-z0-9-]{8,}                # Slack tokens
    | AKIA[0-9A-Z]{16}                           # AWS access key ids
    | AIza[0-9A-Za-z_-]{30,}                     # Google API keys
    | (?:Bearer|Basic)\s+\S{8,}                  # HTTP Authorization values
    | eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.  # JSON Web Tokens
    | -----BEGIN[ A-Z]*PRIVATE\ KEY-----         # PEM private keys
    )
    """,
    re.VERBOSE,
)


class InvalidAuditDetail(ValueError):
    """The detail is not a small JSON object; raised before anything is written.

    The message names the path of the bad value but never the value, which may be secret.
    """


@functools.lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    words = [word.lower() for word in _WORD_BOUNDARY.split(key) if word]
    joined = "".join(words)
    if joined in _SENSITIVE_WHOLE_KEYS:
        return True
    if any(fragment in joined for fragment in _SENSITIVE_FRAGMENTS):
        return True
    for index, word in enumerate(words):
        if word == "code" and index > 0 and words[index - 1] in _PLAIN_CODE_QUALIFIERS:
            continue
        if word in _SENSITIVE_WORDS:
            return True
    return False


def looks_like_credential(value: str) -> bool:
    return _CREDENTIAL_SHAPE.search(value) is not None


def canonical_json(value: Any) -> str:
    """Return ``value`` as JSON with sorted keys, no spaces and only ASCII characters."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def audit_hash(value: str, keys: AuditKeys) -> str:
    """Return the form in which ``value`` is stored when it appears in a detail as a secret."""
    return HASH_PREFIX + keyed_hash(keys.detail, value)


def _hash_scalar(value: str | int | float | bool, keys: AuditKeys) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    return audit_hash(text, keys)


class _InvalidValue(Exception):
    """A bad value in a detail, whose ``path`` is filled in while the recursion unwinds.

    Building the path only on failure keeps the common case, a valid detail, free of string
    work for every key.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        # The parts from the bad value up to the detail, innermost first.
        self.path: list[str] = []


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise _InvalidValue("has a key that is not a string")
    if not key or len(key) > DETAIL_KEY_MAX:
        raise _InvalidValue(f"has a key that is empty or longer than {DETAIL_KEY_MAX}")
    return key


def _path_part(key: str) -> str:
    # Error messages name the path to a bad value, and a key built from data could itself be a
    # secret, so only a key made of letters and underscores is named.
    return key if _PLAIN_PATH_KEY.fullmatch(key) else "<key>"


def _redact(value: Any, keys: AuditKeys, depth: int, *, secret: bool) -> Any:
    """Return ``value`` with secrets hashed; ``secret`` is True below a sensitive key."""
    if depth > DETAIL_MAX_DEPTH:
        raise _InvalidValue(f"nests deeper than {DETAIL_MAX_DEPTH}")
    if isinstance(value, str):
        return _hash_scalar(value, keys) if secret or looks_like_credential(value) else value
    if value is None:
        return None
    if isinstance(value, bool | int):
        return _hash_scalar(value, keys) if secret else value
    if isinstance(value, Mapping):
        return _redact_mapping(value, keys, depth, secret=secret)
    if isinstance(value, list | tuple):
        return _redact_list(value, keys, depth, secret=secret)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _InvalidValue("is not a finite number")
        return _hash_scalar(value, keys) if secret else value
    raise _InvalidValue(
        f"has type {type(value).__name__}; use str, int, float, bool, None, list or dict"
    )


def _redact_mapping(
    value: Mapping[Any, Any], keys: AuditKeys, depth: int, *, secret: bool
) -> dict[str, Any]:
    redacted = {}
    for raw_key, item in value.items():
        key = _check_key(raw_key)
        below = secret or is_sensitive_key(key)
        try:
            redacted[key] = _redact(item, keys, depth + 1, secret=below)
        except _InvalidValue as invalid:
            invalid.path.append(f".{_path_part(key)}")
            raise
    return redacted


def _redact_list(
    value: list[Any] | tuple[Any, ...], keys: AuditKeys, depth: int, *, secret: bool
) -> list[Any]:
    redacted = []
    for index, item in enumerate(value):
        try:
            redacted.append(_redact(item, keys, depth + 1, secret=secret))
        except _InvalidValue as invalid:
            invalid.path.append(f"[{index}]")
            raise
    return redacted


# Details are encoded from the fresh tree that _redact builds, which cannot contain itself.
_encode_redacted = make_compact_encoder(sort_keys=True, allow_nan=False)


def encode_detail(detail: Mapping[str, Any] | None, keys: AuditKeys) -> str:
    """Return the canonical JSON text of ``detail`` with every secret replaced by its hash.

    Raises InvalidAuditDetail when the detail is not a JSON object of the allowed types, nests
    deeper than DETAIL_MAX_DEPTH, or is longer than DETAIL_MAX_BYTES once encoded.
    """
    if detail is None:
        return "{}"
    if not isinstance(detail, Mapping):
        raise InvalidAuditDetail("audit detail must be a mapping of names to values")
    try:
        redacted = _redact(detail, keys, 1, secret=False)
    except _InvalidValue as invalid:
        path = "".join(reversed(invalid.path))
        raise InvalidAuditDetail(f"audit detail{path} {invalid.problem}") from None
    text = _encode_redacted(redacted)
    if len(text) > DETAIL_MAX_BYTES:
        raise InvalidAuditDetail(
            f"audit detail is {len(text)} bytes once encoded; the limit is {DETAIL_MAX_BYTES}"
        )
    return text
