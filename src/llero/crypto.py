"""Primitive cryptographic operations, kept in one module so each has one safe default.

Every token, key and keyed hash in Llero is made here. Random values come from the operating
system's CSPRNG (``secrets``), and comparisons of secret values run in constant time. Secret values
travel in ``Secret``, so a log line or traceback shows a mask instead of the value.
"""

import hashlib
import hmac
import os
import secrets
from typing import Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

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


# AES-256-GCM and key wrapping.
#
# NOTE: Python cannot promise that key material is gone from memory. ``bytes`` objects are
# immutable and are freed without being overwritten. Slicing, base64 decoding and the
# ``cryptography`` objects each keep copies beyond our reach (an AESGCM object keeps its key until
# it is garbage collected), and the operating system may swap any page to disk. ``zero``
# overwrites the one buffer it is given, which shortens how long that copy lives in a core dump or
# a memory read, and nothing more.

BytesLike = bytes | bytearray | memoryview

AES_KEY_BYTES = 32
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
# RFC 3394 adds one 64-bit integrity block to the wrapped key.
WRAPPED_KEY_BYTES = AES_KEY_BYTES + 8


class DecryptionFailed(Exception):
    """A ciphertext or wrapped key failed authentication: wrong key, wrong associated data, or
    changed bytes. The error does not say which, so it gives an attacker no oracle."""


# The output of one AES-GCM encryption: (random nonce, ciphertext followed by its tag). A plain
# tuple, because building a NamedTuple adds a noticeable share to the cost of a small encryption.
SealedBox = tuple[bytes, bytes]


class AesGcmKey:
    """An AES-256-GCM key that draws a fresh random 96-bit nonce for every encryption.

    NIST SP 800-38D allows at most 2**32 encryptions with random nonces under one key. The vault
    stays far below that, because it encrypts one value per data key. Keep one instance per key
    rather than one per call, because building the cipher context is most of the cost of a small
    message.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes | bytearray | Secret[bytes]) -> None:
        raw_key = key.reveal() if isinstance(key, Secret) else key
        if len(raw_key) != AES_KEY_BYTES:
            raise ValueError(f"an AES-256 key has {AES_KEY_BYTES} bytes, not {len(raw_key)}")
        self._aead = AESGCM(raw_key)

    def __repr__(self) -> str:
        return "AesGcmKey(<hidden>)"

    def encrypt(self, plaintext: BytesLike, associated_data: BytesLike) -> SealedBox:
        # os.urandom is the CSPRNG behind secrets.token_bytes, without one Python call per nonce.
        nonce = os.urandom(GCM_NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, plaintext, associated_data)

    def decrypt(self, nonce: BytesLike, ciphertext: BytesLike, associated_data: BytesLike) -> bytes:
        """Return the plaintext; raise DecryptionFailed when the tag does not verify."""
        if len(nonce) != GCM_NONCE_BYTES:
            raise DecryptionFailed("the nonce has the wrong length")
        try:
            return self._aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag:
            raise DecryptionFailed("the ciphertext failed authentication") from None


def aes_gcm_encrypt(
    key: bytes | bytearray | Secret[bytes], plaintext: BytesLike, associated_data: BytesLike
) -> SealedBox:
    """Encrypt once under ``key`` with a fresh random nonce; see AesGcmKey for repeated use."""
    return AesGcmKey(key).encrypt(plaintext, associated_data)


def aes_gcm_decrypt(
    key: bytes | bytearray | Secret[bytes],
    nonce: BytesLike,
    ciphertext: BytesLike,
    associated_data: BytesLike,
) -> bytes:
    """Decrypt once; raise DecryptionFailed when the key, data or associated data do not match."""
    return AesGcmKey(key).decrypt(nonce, ciphertext, associated_data)


def new_data_key() -> bytearray:
    """Return a fresh 256-bit key in a mutable buffer, so the caller can ``zero`` it after use."""
    return bytearray(secrets.token_bytes(AES_KEY_BYTES))


# Data keys are wrapped with AES key wrap (RFC 3394), the mode NIST SP 800-38F specifies for
# protecting keys, rather than with AES-GCM. Key wrap is deterministic, so there is no nonce to
# draw or store and no limit on how many keys one KEK can wrap (random GCM nonces allow about 2**32
# under one key, and every rotation wraps every record again). Its 64-bit integrity check rejects
# a wrong KEK or a changed byte, and the result is 40 bytes instead of 60. Key wrap takes no
# associated data, and needs none here. The payload's own associated data ties each record to its
# row, so a wrapped key moved to another row opens nothing there.


def wrap_key(kek: bytes | Secret[bytes], data_key: BytesLike) -> bytes:
    """Wrap a 256-bit data key under a 256-bit key-encryption key (RFC 3394)."""
    if len(data_key) != AES_KEY_BYTES:
        raise ValueError(f"a data key has {AES_KEY_BYTES} bytes")
    return aes_key_wrap(_reveal_key(kek), data_key)


def unwrap_key(kek: bytes | Secret[bytes], wrapped: BytesLike) -> bytearray:
    """Return the data key in a mutable buffer; raise DecryptionFailed for a wrong KEK or bytes."""
    if len(wrapped) != WRAPPED_KEY_BYTES:
        raise DecryptionFailed("the wrapped key has the wrong length")
    try:
        unwrapped = aes_key_unwrap(_reveal_key(kek), wrapped)
    except InvalidUnwrap:
        raise DecryptionFailed("the wrapped key failed its integrity check") from None
    # The immutable copy that cryptography returns cannot be zeroed; the caller can zero this one.
    return bytearray(unwrapped)


def zero(buffer: bytearray) -> None:
    """Overwrite ``buffer`` with zero bytes in place (see the NOTE above on what this cannot do)."""
    buffer[:] = bytes(len(buffer))


def _reveal_key(key: bytes | Secret[bytes]) -> bytes:
    raw_key = key.reveal() if isinstance(key, Secret) else key
    if len(raw_key) != AES_KEY_BYTES:
        raise ValueError(f"a key-encryption key has {AES_KEY_BYTES} bytes, not {len(raw_key)}")
    return raw_key
