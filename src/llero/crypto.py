"""Primitive cryptographic operations, kept in one module so each has one safe default.

Every token, key and keyed hash in Llero is made here. Random values come from the operating
system's CSPRNG (``secrets``), and comparisons of secret values run in constant time. Secret values
travel in ``Secret``, so a log line or traceback shows a mask instead of the value.
"""

import hashlib
import hmac
import secrets
from typing import Generic, TypeVar

# 128 bits is the floor for anything that authenticates a caller; the default is 256.
MIN_TOKEN_BYTES = 16
DEFAULT_TOKEN_BYTES = 32

SecretValue = TypeVar("SecretValue", str, bytes)


class Secret(Generic[SecretValue]):
    """A key, token or other secret value that is masked in ``repr``, ``str`` and formatting.

    ``reveal()`` is the only way to read the value, so every place that uses the plaintext is
    easy to find. Two secrets are compared in constant time, and a secret never equals a plain
    value.
    """

    __slots__ = ("_value",)

    _value: SecretValue

    def __init__(self, value: SecretValue) -> None:
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def reveal(self) -> SecretValue:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __format__(self, format_spec: str) -> str:
        return str(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return constant_time_equals(self._value, other._value)

    def __hash__(self) -> int:
        # A hash of the value would be a fast oracle for guessing it.
        raise TypeError("Secret is not hashable")

    def __copy__(self) -> "Secret[SecretValue]":
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> "Secret[SecretValue]":
        return self

    def __reduce__(self) -> tuple[object, ...]:
        # A pickled secret would land in a cache or queue as plaintext.
        raise TypeError("Secret cannot be pickled; reveal() the value deliberately")


def random_token(nbytes: int = DEFAULT_TOKEN_BYTES) -> str:
    """Return ``nbytes`` bytes from the CSPRNG as unpadded URL-safe base64.

    Raises ValueError when ``nbytes`` is below 16 (128 bits), which is too short to authenticate.
    """
    if nbytes < MIN_TOKEN_BYTES:
        raise ValueError(f"a token needs at least {MIN_TOKEN_BYTES} random bytes, not {nbytes}")
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest of a high-entropy token, the form in which tokens are stored.

    Only for values with at least 128 random bits, such as those from ``random_token``; never for
    passwords. A salt exists to defeat precomputed tables and to hide that two users chose the same
    value, and a slow hash exists to make guessing a low-entropy value expensive. Neither threat
    applies to a 256-bit random value: no table can cover 2**256 inputs, two tokens never collide,
    and guessing takes about 2**255 trials at any hash speed. An unsalted hash is also what lets the
    database find a presented token with one indexed equality lookup.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def keyed_hash(key: bytes | Secret[bytes], value: str | bytes) -> str:
    """Return HMAC-SHA256 of ``value`` under ``key`` as hex.

    Use it where a low-entropy value (an e-mail address, a client IP) must be matched or counted
    without storing it: without the key nobody can test guesses against the stored digest.
    """
    raw_key = key.reveal() if isinstance(key, Secret) else key
    return hmac.new(raw_key, _as_bytes(value), hashlib.sha256).hexdigest()


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two values in time that depends only on their lengths, never on where they differ.

    Strings are compared as UTF-8, because ``hmac.compare_digest`` accepts only ASCII ``str``.
    """
    return hmac.compare_digest(_as_bytes(a), _as_bytes(b))


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value
