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

KEKs that `llero keys rotate` adds later are wrapped by the same service and written to
keys/kek/<id>.key.wrapped (see kek_wrapping.py), so no KEK is ever stored in clear under an
external source. Each of them costs one decrypt call at start, or when a running process first
sees it.
"""

import base64
import secrets
from pathlib import Path

from pydantic import SecretStr

from llero.audit.context import Origin
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.config.keyfiles import MASTER_KEY, SYMMETRIC_KEY_BYTES, write_private_file
from llero.config.settings import KekSourceKind, Settings
from llero.crypto import Secret
from llero.errors import KeyFileError
from llero.logs import get_logger
from llero.storage.db import Database
from llero.vault.backends import build_key_service
from llero.vault.errors import BackendUnavailable
from llero.vault.kek_wrapping import KekWrapper, KeyService
from llero.vault.keyring import Keyring, load_keyring

WRAPPED_MASTER_KEY = "master.key.wrapped"

logger = get_logger(__name__)


def create_wrapped_master_key(
    keys_dir: Path, service: KeyService, source: KekSourceKind
) -> Path | None:
    """Create keys/master.key.wrapped unless it exists; return its path when it was created.

    Raises BackendUnavailable when the service fails, and KeyFileError when it cannot decrypt
    what it encrypted (see KekWrapper.wrapped_document).
    """
    path = keys_dir / WRAPPED_MASTER_KEY
    if path.exists():
        return None
    material = Secret(secrets.token_bytes(SYMMETRIC_KEY_BYTES))
    write_private_file(path, KekWrapper(service, source).wrapped_document(material))
    logger.info("vault_wrapped_master_key_created", source=source.value)
    return path


def unwrap_master_key(keys_dir: Path, service: KeyService, source: KekSourceKind) -> SecretStr:
    """Return the base KEK, base64, as LLERO_MASTER_KEY would hold it.

    Raises KeyFileError for a missing or malformed file, and BackendUnavailable.
    """
    material = KekWrapper(service, source).unwrap_file(keys_dir / WRAPPED_MASTER_KEY)
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
        # The KEKs that rotations added are wrapped by the same service, so loading them calls
        # it again and can fail the same way.
        return load_keyring(settings.keys_dir, master_key, KekWrapper(service, source))
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


def _record_failure(database: Database, error: BackendUnavailable) -> None:
    detail = {
        "backend": error.backend,
        "operation": error.operation,
        "failure": str(error.failure),
        "status": error.status,
    }
    with database.transaction() as session:
        record_as(session, Origin.system("startup"), AuditEvent.VAULT_BACKEND_FAILED, None, detail)
