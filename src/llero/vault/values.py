"""Where secret values live: the built-in store or an external backend.

VaultService keeps every secret's metadata, versions, grants and audit records in Llero's database
whichever store holds the values, and hands each value to a ``ValueStore`` by (secret id, version).
The built-in store seals the value in an envelope that goes into the version's row. An external
store keeps the value itself and returns a reference (a path or a secret name) for the row.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from llero.crypto import Secret
from llero.vault.envelope import Binding, envelope_kek_id, open_plaintext, seal_plaintext
from llero.vault.keyring import Keyring
from llero.vault.models import SecretVersion

VALUE_TABLE = SecretVersion.__tablename__
VALUE_FIELD = "value"


class Backend(StrEnum):
    BUILTIN = "builtin"
    HASHICORP = "hashicorp"
    AWS = "aws"


_LABELS = {
    Backend.BUILTIN: "built-in store",
    Backend.HASHICORP: "HashiCorp Vault",
    Backend.AWS: "AWS Secrets Manager",
}


def backend_label(backend: str) -> str:
    """Return the name of a backend as messages show it."""
    try:
        return _LABELS[Backend(backend)]
    except ValueError:
        return "unknown backend"


@dataclass(frozen=True)
class StoredValue:
    """The location of a version's value: an envelope in the row, or a reference to a backend."""

    backend: Backend
    envelope: bytes | None = None
    kek_id: str | None = None
    reference: str | None = None


class ValueStore(Protocol):
    """Keeps the values of secret versions; each method may raise BackendUnavailable."""

    @property
    def backend(self) -> Backend: ...

    def put(self, secret_id: int, version: int, value: Secret[bytes]) -> StoredValue:
        """Store a new value and return what the version's row must keep to find it again."""

    def get(self, secret_id: int, version: int, stored: StoredValue) -> Secret[bytes]:
        """Return the value stored by ``put`` for this secret and version."""

    def destroy(self, secret_id: int, version: int, stored: StoredValue) -> None:
        """Delete the value for good; a value that is gone already counts as destroyed."""


def value_binding(secret_id: int, version: int) -> Binding:
    return Binding(table=VALUE_TABLE, record_id=secret_id, field=VALUE_FIELD, version=version)


class BuiltinValueStore:
    """Values sealed in envelopes under the keyring's KEKs, kept in the version's row."""

    backend = Backend.BUILTIN

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def put(self, secret_id: int, version: int, value: Secret[bytes]) -> StoredValue:
        envelope = seal_plaintext(self._keyring, value, value_binding(secret_id, version))
        return StoredValue(Backend.BUILTIN, envelope=envelope, kek_id=envelope_kek_id(envelope))

    def get(self, secret_id: int, version: int, stored: StoredValue) -> Secret[bytes]:
        if stored.envelope is None:
            raise ValueError("a built-in value needs its envelope")
        return open_plaintext(self._keyring, stored.envelope, value_binding(secret_id, version))

    def destroy(self, secret_id: int, version: int, stored: StoredValue) -> None:
        # The envelope lives in the row, which VaultService clears in the same transaction.
        return None
