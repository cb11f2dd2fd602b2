"""Unseal a vault that started without its master key.

Possession of the master key authorises the call, so the key must match what the vault already
holds: the base KEK that the KEK manifest lists, or before any rotation a KEK that wraps stored
envelopes. A vault with neither (no manifest and nothing stored yet) cannot be unsealed over
HTTP. Any key would match there, so the first caller would choose the key that every later secret
is sealed with. Its operator sets LLERO_MASTER_KEY or master.key and restarts instead.

Failed attempts are throttled per process. A 256-bit key cannot be guessed at any rate, so the
limit is there to keep a caller from filling the log and the audit chain through this route.
"""

import base64
import binascii
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from llero.config.keyfiles import SYMMETRIC_KEY_BYTES
from llero.crypto import Secret
from llero.errors import InvalidInput, KeyFileError, Refused, Violation
from llero.logs import get_logger
from llero.storage.db import Database
from llero.vault.errors import UnsealRejected, UnsealThrottled, VaultSealed
from llero.vault.keyring import Kek, KekSource, Keyring, kek_id_of, read_manifest
from llero.vault.rotation import kek_ids_in_use

FAILURE_LIMIT = 5
FAILURE_WINDOW_SECONDS = 60.0

logger = get_logger(__name__)


class UnsealThrottle:
    """Allow at most ``limit`` failed unseal attempts per ``window`` seconds in this process."""

    def __init__(
        self,
        limit: int = FAILURE_LIMIT,
        window: float = FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise UnsealThrottled while the window contains ``limit`` failures."""
        with self._lock:
            now = self._clock()
            while self._failures and self._failures[0] <= now - self._window:
                self._failures.popleft()
            if len(self._failures) >= self._limit:
                wait = self._failures[0] + self._window - now
                raise UnsealThrottled(max(1, math.ceil(wait)))

    def record_failure(self) -> None:
        with self._lock:
            self._failures.append(self._clock())


def unseal_vault(
    keyring: Keyring, database: Database, keys_dir: Path, encoded_key: Secret[str]
) -> Kek:
    """Unseal ``keyring`` with the base64 master key; return the current KEK.

    Raises InvalidInput for a value that is not 32 bytes of base64, UnsealRejected for a key that
    is not the vault's, and Refused when the vault is not sealed or nothing identifies its key.
    """
    if not keyring.sealed:
        raise Refused("the vault is not sealed")
    material = _decoded(encoded_key)
    expected = _expected_kek_ids(database, keys_dir)
    if not expected:
        raise Refused(
            "nothing stored identifies the master key yet; set LLERO_MASTER_KEY or create "
            "master.key, then restart"
        )
    if kek_id_of(material) not in expected:
        raise UnsealRejected()
    try:
        return keyring.unseal(SecretStr(encoded_key.reveal()))
    except KeyFileError as error:
        # The key matched, so a KEK file added by a rotation is missing or unusable.
        logger.exception("vault_unseal_failed", error=error.message)
        raise


def _decoded(encoded_key: Secret[str]) -> bytes:
    try:
        material = base64.b64decode(encoded_key.reveal().strip(), validate=True)
    except (binascii.Error, ValueError):
        material = b""
    if len(material) != SYMMETRIC_KEY_BYTES:
        raise InvalidInput(
            f"master_key: must be {SYMMETRIC_KEY_BYTES} bytes in base64, as in master.key",
            details=[Violation("body.master_key", "not a base64 256-bit key")],
        )
    return material


def _expected_kek_ids(database: Database, keys_dir: Path) -> set[str]:
    """Return the ids a correct master key can have: the manifest's base KEK, or without a
    manifest, the KEKs of stored envelopes."""
    try:
        manifest = read_manifest(keys_dir)
    except VaultSealed:
        manifest = None
    if manifest is not None:
        return {
            record.id
            for record in manifest.keys
            if record.source is KekSource.BASE and record.retired_at is None
        }
    with database.reader() as session:
        return kek_ids_in_use(session)
