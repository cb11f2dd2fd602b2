"""Envelope encryption: each value gets its own data key, and a KEK wraps that data key.

A stored envelope (format 1) is one byte string with fixed-size fields:

    offset  size  field
    0       1     format, 0x01
    1       8     KEK id (see keyring.kek_id_of)
    9       40    data key wrapped by that KEK (AES key wrap, RFC 3394)
    49      12    AES-GCM nonce
    61      n+16  AES-256-GCM ciphertext of the n-byte value, then the 16-byte tag

The associated data of the GCM encryption is the value's ``Binding``: table, record id, field and
version. An envelope copied into another row, field or version therefore fails to decrypt, even
though its data key still unwraps. Re-wrapping under a new KEK changes bytes 1 to 48 only, so
rotation never decrypts or re-encrypts a value.
"""

import struct
from dataclasses import dataclass, replace

from llero.crypto import (
    GCM_NONCE_BYTES,
    GCM_TAG_BYTES,
    WRAPPED_KEY_BYTES,
    AesGcmKey,
    DecryptionFailed,
    Secret,
    new_data_key,
    unwrap_key,
    wrap_key,
    zero,
)
from llero.vault.errors import CiphertextInvalid, InvalidReason, VaultSealed
from llero.vault.keyring import KEK_ID_BYTES, Kek, Keyring

FORMAT_V1 = 0x01

_KEK_ID_END = 1 + KEK_ID_BYTES
_WRAPPED_END = _KEK_ID_END + WRAPPED_KEY_BYTES
_NONCE_END = _WRAPPED_END + GCM_NONCE_BYTES
# An empty value still has its tag, so no format 1 envelope is shorter than this.
MIN_ENVELOPE_BYTES = _NONCE_END + GCM_TAG_BYTES

_AD_LABEL = b"llero vault envelope"
_MAX_BINDING_PART = 0xFFFF
_MAX_VERSION = 2**63 - 1


@dataclass(frozen=True)
class Binding:
    """The location of a stored value, used as associated data so the envelope opens only there."""

    table: str
    record_id: int | str
    field: str
    version: int

    def __post_init__(self) -> None:
        for part in (self.table, str(self.record_id), self.field):
            if not part or len(part.encode("utf-8")) > _MAX_BINDING_PART:
                raise ValueError("binding parts must be non-empty and at most 65535 bytes")
        if not 0 <= self.version <= _MAX_VERSION:
            raise ValueError("a binding version must fit in a signed 64-bit integer")

    def associated_data(self) -> bytes:
        """Encode every part with its length first, so no two bindings share an encoding."""
        parts = [_AD_LABEL, bytes([FORMAT_V1])]
        for text in (self.table, str(self.record_id), self.field):
            encoded = text.encode("utf-8")
            parts.append(struct.pack(">H", len(encoded)))
            parts.append(encoded)
        parts.append(struct.pack(">Q", self.version))
        return b"".join(parts)


@dataclass(frozen=True)
class Envelope:
    """The parsed fields of a stored envelope; ``ciphertext`` ends with the GCM tag."""

    kek_id: str
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                bytes([FORMAT_V1]),
                bytes.fromhex(self.kek_id),
                self.wrapped_key,
                self.nonce,
                self.ciphertext,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> "Envelope":
        """Parse an envelope; raise CiphertextInvalid when it is cut short or of another format."""
        if data[:1] not in (b"", bytes([FORMAT_V1])):
            raise CiphertextInvalid(InvalidReason.UNKNOWN_FORMAT)
        if len(data) < MIN_ENVELOPE_BYTES:
            raise CiphertextInvalid(InvalidReason.TRUNCATED)
        return cls(
            kek_id=data[1:_KEK_ID_END].hex(),
            wrapped_key=data[_KEK_ID_END:_WRAPPED_END],
            nonce=data[_WRAPPED_END:_NONCE_END],
            ciphertext=data[_NONCE_END:],
        )


def seal_plaintext(keyring: Keyring, plaintext: Secret[bytes], binding: Binding) -> bytes:
    """Encrypt ``plaintext`` under a fresh data key wrapped by the current KEK; return the envelope.

    Raises VaultSealed when the keyring contains no KEK.
    """
    kek = keyring.current
    data_key = new_data_key()
    try:
        nonce, ciphertext = AesGcmKey(data_key).encrypt(
            plaintext.reveal(), binding.associated_data()
        )
        wrapped = wrap_key(kek.material, data_key)
    finally:
        zero(data_key)
    return Envelope(kek.id, wrapped, nonce, ciphertext).to_bytes()


def open_plaintext(keyring: Keyring, data: bytes, binding: Binding) -> Secret[bytes]:
    """Decrypt an envelope stored at ``binding``; return the value masked in a Secret.

    Raises CiphertextInvalid when the envelope is malformed, changed, stored at another binding,
    or wrapped by a KEK the keyring does not contain, and VaultSealed when it contains none.
    """
    envelope = Envelope.from_bytes(data)
    data_key = _unwrap(keyring, envelope)
    try:
        plaintext = AesGcmKey(data_key).decrypt(
            envelope.nonce, envelope.ciphertext, binding.associated_data()
        )
    except DecryptionFailed:
        raise CiphertextInvalid(
            InvalidReason.AUTHENTICATION_FAILED, kek_id=envelope.kek_id
        ) from None
    finally:
        zero(data_key)
    return Secret(plaintext)


def rewrap(keyring: Keyring, data: bytes, target: Kek) -> bytes:
    """Return the envelope with its data key wrapped by ``target``; the value is not decrypted.

    An envelope already wrapped by ``target`` is returned unchanged.
    """
    envelope = Envelope.from_bytes(data)
    if envelope.kek_id == target.id:
        return data
    data_key = _unwrap(keyring, envelope)
    try:
        wrapped = wrap_key(target.material, data_key)
    finally:
        zero(data_key)
    return replace(envelope, kek_id=target.id, wrapped_key=wrapped).to_bytes()


def envelope_kek_id(data: bytes) -> str:
    """Return the id of the KEK that wraps an envelope's data key."""
    return Envelope.from_bytes(data).kek_id


def _unwrap(keyring: Keyring, envelope: Envelope) -> bytearray:
    kek = keyring.kek(envelope.kek_id)
    if kek is None:
        if keyring.sealed:
            raise VaultSealed()
        raise CiphertextInvalid(InvalidReason.UNKNOWN_KEK, kek_id=envelope.kek_id)
    try:
        return unwrap_key(kek.material, envelope.wrapped_key)
    except DecryptionFailed:
        raise CiphertextInvalid(InvalidReason.UNWRAP_FAILED, kek_id=envelope.kek_id) from None
