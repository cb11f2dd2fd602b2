"""KEKs stored encrypted by an external key service (HashiCorp Vault Transit or AWS KMS).

A wrapped key file is JSON: ``{"version": 1, "source": "<LLERO_VAULT_KEK_SOURCE>", "wrapped":
"<the service's ciphertext>"}``, mode 0600. keys/master.key.wrapped contains the base KEK in
this form, and keys/kek/<id>.key.wrapped each KEK that a rotation added under an external
source. The key material itself is never written to disk.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llero.config.keyfiles import SYMMETRIC_KEY_BYTES, read_private_file
from llero.config.settings import KekSourceKind
from llero.crypto import Secret
from llero.errors import KeyFileError

WRAPPED_FORMAT_VERSION = 1


class KeyService(Protocol):
    """Encrypts and decrypts key material under a key that never leaves the service."""

    @property
    def label(self) -> str: ...

    def wrap(self, material: Secret[bytes]) -> str: ...

    def unwrap(self, wrapped: str) -> Secret[bytes]: ...


@dataclass(frozen=True)
class KekWrapper:
    """The key service that LLERO_VAULT_KEK_SOURCE selects, and that setting's value."""

    service: KeyService
    source: KekSourceKind

    @property
    def label(self) -> str:
        return self.service.label

    def wrapped_document(self, material: Secret[bytes]) -> bytes:
        """Return the file content that stores ``material`` encrypted by the service.

        The ciphertext is decrypted once before it is returned, so a service that can encrypt
        but not decrypt (a policy without decrypt) fails here instead of at the next start.
        Raises BackendUnavailable when the service fails.
        """
        wrapped = self.service.wrap(material)
        if self.service.unwrap(wrapped) != material:
            raise KeyFileError(f"{self.label} returned a different key when asked to decrypt it")
        document = {
            "version": WRAPPED_FORMAT_VERSION,
            "source": self.source.value,
            "wrapped": wrapped,
        }
        return json.dumps(document).encode("utf-8") + b"\n"

    def unwrap_file(self, path: Path) -> Secret[bytes]:
        """Return the key that ``path`` contains, decrypted by the service.

        Raises KeyFileError for a missing, malformed or foreign file, and BackendUnavailable.
        """
        document = read_wrapped_document(path)
        if document.get("source") != self.source.value:
            raise KeyFileError(
                f"{path} was wrapped by {document.get('source')!s}, but LLERO_VAULT_KEK_SOURCE "
                f"is {self.source.value}"
            )
        material = self.service.unwrap(str(document["wrapped"]))
        if len(material.reveal()) != SYMMETRIC_KEY_BYTES:
            raise KeyFileError(f"{self.label} decrypted {path} to a key of the wrong size")
        return material


def read_wrapped_document(path: Path) -> dict[str, Any]:
    """Return the parsed wrapped key file; raise KeyFileError when it is not one."""
    try:
        document = json.loads(read_private_file(path))
    except ValueError:
        raise KeyFileError(f"{path} is not valid JSON") from None
    if (
        not isinstance(document, dict)
        or document.get("version") != WRAPPED_FORMAT_VERSION
        or not isinstance(document.get("wrapped"), str)
    ):
        raise KeyFileError(f"{path} is invalid: expected version 1 with a wrapped key")
    return document
