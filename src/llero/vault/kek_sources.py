"""The base KEK from an external key service: HashiCorp Vault Transit or AWS KMS.

With LLERO_VAULT_KEK_SOURCE=hashicorp_transit or aws_kms there is no master.key. `llero init`
draws a random 256-bit base KEK, has the key service encrypt it, and writes only that ciphertext
to keys/master.key.wrapped. At start Llero asks the service to decrypt it and keeps the KEK in
memory, so the data directory and its backups alone cannot open a secret.

The service wraps the base KEK once, not each data key. A call per data key would put a network
round trip into every secret read and make every read fail while the service is down; this way
the service is needed only at start, as HashiCorp Vault's own auto-unseal needs its KMS only
to unseal. When the service is down or refuses at start, the keyring starts sealed, the failure
is logged in one line and recorded as vault:backend_failed, and master.key is never read instead.

NOTE: KEKs that `llero keys rotate` adds later are written to keys/kek/ as plain key files, as
with the file source; wrapping those under the external key too is not done yet.
"""

import base64
import json
import secrets
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from llero.audit.context import Origin
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.config.keyfiles import (
    MASTER_KEY,
    SYMMETRIC_KEY_BYTES,
    read_private_file,
    write_private_file,
)
from llero.config.settings import KekSourceKind, Settings
from llero.crypto import Secret
from llero.errors import KeyFileError
from llero.logs import get_logger
from llero.storage.db import Database
from llero.vault.backends import build_key_service
from llero.vault.errors import BackendUnavailable
from llero.vault.keyring import Keyring, load_keyring

WRAPPED_MASTER_KEY = "master.key.wrapped"
WRAPPED_FORMAT_VERSION = 1

logger = get_logger(__name__)


class KeyService(Protocol):
    """Encrypts and decrypts key material under a key that never leaves the service."""

    @property
    def label(self) -> str: ...

    def wrap(self, material: Secret[bytes]) -> str: ...

    def unwrap(self, wrapped: str) -> Secret[bytes]: ...


def create_wrapped_master_key(
    keys_dir: Path, service: KeyService, source: KekSourceKind
) -> Path | None:
    """Create keys/master.key.wrapped unless it exists; return its path when it was created.

    The new key is unwrapped once before the file is written, so a service that can encrypt but
    not decrypt (a policy without decrypt) fails here instead of sealing the next start.
    Raises BackendUnavailable when the service fails.
    """
    path = keys_dir / WRAPPED_MASTER_KEY
    if path.exists():
        return None
    material = Secret(secrets.token_bytes(SYMMETRIC_KEY_BYTES))
    wrapped = service.wrap(material)
    if service.unwrap(wrapped) != material:
        raise KeyFileError(f"{service.label} returned a different key when asked to decrypt it")
    document = {"version": WRAPPED_FORMAT_VERSION, "source": source.value, "wrapped": wrapped}
    write_private_file(path, json.dumps(document).encode("utf-8") + b"\n")
    logger.info("vault_wrapped_master_key_created", source=source.value)
    return path


def unwrap_master_key(keys_dir: Path, service: KeyService, source: KekSourceKind) -> SecretStr:
    """Return the base KEK, base64, as LLERO_MASTER_KEY would hold it.

    Raises KeyFileError for a missing or malformed file, and BackendUnavailable.
    """
    path = keys_dir / WRAPPED_MASTER_KEY
    document = _read_wrapped(path)
    if document.get("source") != source.value:
        raise KeyFileError(
            f"{path} was wrapped by {document.get('source')!s}, but LLERO_VAULT_KEK_SOURCE is "
            f"{source.value}"
        )
    material = service.unwrap(str(document["wrapped"]))
    if len(material.reveal()) != SYMMETRIC_KEY_BYTES:
        raise KeyFileError(f"{service.label} decrypted {path} to a key of the wrong size")
    return SecretStr(base64.b64encode(material.reveal()).decode("ascii"))


def load_vault_keyring(settings: Settings, database: Database | None = None) -> Keyring:
    """Load the keyring from the KEK source the settings select.

    With an external source, a service that fails leaves the keyring sealed; the failure is
    recorded in ``database`` when one is given. Raises KeyFileError when master.key exists
    beside an external source, because it is unclear which key was meant.
    """
    service = build_key_service(settings)
    if service is None:
        return load_keyring(settings.keys_dir, settings.master_key)
    source = settings.vault_kek_source
    if (settings.keys_dir / MASTER_KEY).exists():
        raise KeyFileError(
            f"{settings.keys_dir / MASTER_KEY} exists, but LLERO_VAULT_KEK_SOURCE={source.value} "
            "provides the base KEK; move master.key away or set LLERO_VAULT_KEK_SOURCE=file"
        )
    try:
        master_key = unwrap_master_key(settings.keys_dir, service, source)
    except BackendUnavailable as error:
        logger.error(  # noqa: TRY400 - the error is described; its traceback adds nothing
            "vault_sealed",
            reason=f"{error.message}; the vault stays sealed until a restart",
            failure=str(error.failure),
            status=error.status,
        )
        if database is not None:
            _record_failure(database, error)
        return Keyring()
    return load_keyring(settings.keys_dir, master_key)


def _read_wrapped(path: Path) -> dict[str, Any]:
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


def _record_failure(database: Database, error: BackendUnavailable) -> None:
    detail = {
        "backend": error.backend,
        "operation": error.operation,
        "failure": str(error.failure),
        "status": error.status,
    }
    with database.transaction() as session:
        record_as(session, Origin.system("startup"), AuditEvent.VAULT_BACKEND_FAILED, None, detail)
