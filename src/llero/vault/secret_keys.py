"""Per-secret keys, the inner layer that makes deleting a secret destroy its values.

A version's value is encrypted twice. The inner layer is AES-256-GCM under the secret's own key
(stored in ``secret_keys``, itself sealed by the KEK); the outer layer is the version's envelope
(envelope.py) around that inner ciphertext. The outer layer is what KEK rotation re-wraps. The
inner layer exists so that deleting one row, the secret's key, makes every copy of every version
of that secret unreadable: the envelope still opens with the KEK, but only to a ciphertext under
a key that no longer exists.

The inner ciphertext is the 12-byte nonce followed by the GCM ciphertext and tag. Its associated
data is the version's binding, the same one the envelope uses.
"""

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from llero.crypto import (
    GCM_NONCE_BYTES,
    AesGcmKey,
    DecryptionFailed,
    Secret,
    new_data_key,
)
from llero.vault.envelope import Binding, envelope_kek_id, open_plaintext, seal_plaintext
from llero.vault.errors import CiphertextInvalid, InvalidReason
from llero.vault.keyring import Keyring
from llero.vault.models import SecretKey

KEY_TABLE = SecretKey.__tablename__
KEY_FIELD = "key"
KEY_VERSION = 1


def key_binding(secret_id: int) -> Binding:
    return Binding(table=KEY_TABLE, record_id=secret_id, field=KEY_FIELD, version=KEY_VERSION)


def create_secret_key(session: Session, keyring: Keyring, secret_id: int) -> bytearray:
    """Store a fresh key for ``secret_id``, sealed by the current KEK, and return it.

    The caller zeroes the returned buffer when done with it.
    """
    key = new_data_key()
    envelope = seal_plaintext(keyring, Secret(bytes(key)), key_binding(secret_id))
    session.add(SecretKey(secret_id=secret_id, envelope=envelope, kek_id=envelope_kek_id(envelope)))
    session.flush()
    return key


def open_secret_key(keyring: Keyring, secret_id: int, envelope: bytes | None) -> bytearray:
    """Return the key of ``secret_id`` from its stored envelope, in a buffer to zero after use.

    Raises CiphertextInvalid when the secret has no key row (it was deleted, or it was stored
    before per-secret keys existed) or the envelope does not open.
    """
    if envelope is None:
        raise CiphertextInvalid(InvalidReason.KEY_MISSING)
    return bytearray(open_plaintext(keyring, envelope, key_binding(secret_id)).reveal())


def load_secret_key(session: Session, keyring: Keyring, secret_id: int) -> bytearray:
    envelope = session.scalar(select(SecretKey.envelope).where(SecretKey.secret_id == secret_id))
    return open_secret_key(keyring, secret_id, envelope)


def shred_secret_key(session: Session, secret_id: int) -> None:
    """Delete the key of ``secret_id``, so no copy of its values can be decrypted again."""
    session.execute(delete(SecretKey).where(SecretKey.secret_id == secret_id))


def seal_inner(key: bytearray, plaintext: bytes, binding: Binding) -> bytes:
    nonce, ciphertext = AesGcmKey(key).encrypt(plaintext, binding.associated_data())
    return nonce + ciphertext


def open_inner(key: bytearray, sealed: bytes, binding: Binding) -> Secret[bytes]:
    """Decrypt an inner ciphertext; raise CiphertextInvalid when it fails authentication."""
    try:
        plaintext = AesGcmKey(key).decrypt(
            sealed[:GCM_NONCE_BYTES], sealed[GCM_NONCE_BYTES:], binding.associated_data()
        )
    except DecryptionFailed:
        raise CiphertextInvalid(InvalidReason.AUTHENTICATION_FAILED) from None
    return Secret(plaintext)
