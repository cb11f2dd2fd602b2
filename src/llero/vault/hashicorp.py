"""HashiCorp Vault through hvac: KV version 2 holds secret values, Transit wraps the base KEK.

Every call goes through ``HashiCorpConnection.call``, which turns hvac's and requests' errors into
BackendUnavailable. Neither the token nor the AppRole secret id ever reaches a message or a log:
hvac sends the token in the X-Vault-Token header, and errors are described by type and status.
"""

import base64
import binascii
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from llero.crypto import Secret, random_token
from llero.logs import get_logger
from llero.vault.errors import BackendFailure, BackendUnavailable
from llero.vault.values import Backend, StoredValue

KV_LABEL = "HashiCorp Vault"
TRANSIT_LABEL = "HashiCorp Vault Transit"
# The KV field that holds the value in each Vault secret Llero writes.
VALUE_KEY = "value"

Result = TypeVar("Result")

logger = get_logger(__name__)


class HashiCorpAuth(StrEnum):
    TOKEN = "token"  # noqa: S105 - the name of an auth method, not a token
    APPROLE = "approle"


@dataclass(frozen=True)
class HashiCorpConfig:
    """Where the Vault server is and how Llero signs in; built from LLERO_HASHICORP_* settings."""

    url: str
    auth: HashiCorpAuth
    token: Secret[str] | None = None
    role_id: str | None = None
    secret_id: Secret[str] | None = None
    approle_mount: str = "approle"
    kv_mount: str = "secret"
    path_prefix: str = "llero"
    transit_mount: str = "transit"
    transit_key: str = "llero"
    ca_cert: Path | None = None
    timeout_seconds: int = 5


class HashiCorpConnection:
    """One hvac client, signed in with a token or by AppRole login.

    An AppRole token expires, and Vault then answers 403. The connection signs in again once and
    repeats the call; a second 403 is reported as a refusal.
    """

    def __init__(self, config: HashiCorpConfig) -> None:
        self._config = config
        self._client: hvac.Client | None = None
        self._lock = threading.Lock()

    @property
    def config(self) -> HashiCorpConfig:
        return self._config

    def call(self, label: str, operation: str, action: Callable[[hvac.Client], Result]) -> Result:
        """Run ``action`` with a signed-in client; raise BackendUnavailable when Vault fails."""
        try:
            try:
                return action(self._signed_in(label))
            except hvac.exceptions.Forbidden:
                if self._config.auth is not HashiCorpAuth.APPROLE:
                    raise
                self._client = None
                return action(self._signed_in(label))
        except (requests.RequestException, hvac.exceptions.VaultError) as error:
            raise _unavailable(label, operation, error) from None

    def _signed_in(self, label: str) -> hvac.Client:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._new_client()
                except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden) as error:
                    # Vault answers 400 to an unknown role id or secret id, and 403 to a token
                    # it does not accept: both mean the credentials were refused.
                    raise BackendUnavailable(
                        label,
                        "login",
                        BackendFailure.REFUSED,
                        status=_STATUS_BY_ERROR.get(type(error)),
                    ) from None
            return self._client

    def _new_client(self) -> hvac.Client:
        config = self._config
        verify: bool | str = str(config.ca_cert) if config.ca_cert is not None else True
        if config.auth is HashiCorpAuth.TOKEN:
            if config.token is None:
                raise ValueError("token auth needs a token")
            return hvac.Client(
                url=config.url,
                token=config.token.reveal(),
                verify=verify,
                timeout=config.timeout_seconds,
            )
        if config.role_id is None or config.secret_id is None:
            raise ValueError("AppRole auth needs a role id and a secret id")
        client = hvac.Client(url=config.url, verify=verify, timeout=config.timeout_seconds)
        client.auth.approle.login(
            role_id=config.role_id,
            secret_id=config.secret_id.reveal(),
            mount_point=config.approle_mount,
        )
        logger.info("vault_hashicorp_signed_in", auth="approle")
        return client


def _unavailable(
    label: str, operation: str, error: requests.RequestException | hvac.exceptions.VaultError
) -> BackendUnavailable:
    if isinstance(error, requests.RequestException):
        return BackendUnavailable(label, operation, BackendFailure.UNREACHABLE)
    status = _STATUS_BY_ERROR.get(type(error))
    if isinstance(error, hvac.exceptions.Unauthorized | hvac.exceptions.Forbidden):
        failure = BackendFailure.REFUSED
    elif isinstance(error, hvac.exceptions.InvalidPath):
        failure = BackendFailure.MISSING
    else:
        failure = BackendFailure.FAILED
    return BackendUnavailable(label, operation, failure, status=status)


_STATUS_BY_ERROR: dict[type[hvac.exceptions.VaultError], int] = {
    hvac.exceptions.InvalidRequest: 400,
    hvac.exceptions.Unauthorized: 401,
    hvac.exceptions.Forbidden: 403,
    hvac.exceptions.InvalidPath: 404,
    hvac.exceptions.RateLimitExceeded: 429,
    hvac.exceptions.InternalServerError: 500,
    hvac.exceptions.BadGateway: 502,
    hvac.exceptions.VaultDown: 503,
}


class HashiCorpKvStore:
    """Secret values in a KV version 2 mount, one Vault secret per Llero secret version.

    Each value goes to a new path, ``<prefix>/<secret id>/<version>-<random>``, written with
    check-and-set 0 so it never replaces an existing secret. The random part keeps a path unique
    even when the database reuses a secret id after a rollback.
    """

    backend = Backend.HASHICORP

    def __init__(self, connection: HashiCorpConnection) -> None:
        self._connection = connection
        self._mount = connection.config.kv_mount
        self._prefix = connection.config.path_prefix.strip("/")

    def put(self, secret_id: int, version: int, value: Secret[bytes]) -> StoredValue:
        path = f"{self._prefix}/{secret_id}/{version}-{random_token(16)}"
        secret = {VALUE_KEY: value.reveal().decode("utf-8")}
        self._connection.call(
            KV_LABEL,
            "put",
            lambda client: client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=secret, cas=0, mount_point=self._mount
            ),
        )
        return StoredValue(Backend.HASHICORP, reference=path)

    def get(self, secret_id: int, version: int, stored: StoredValue) -> Secret[bytes]:
        path = _reference(stored)
        response = self._connection.call(
            KV_LABEL,
            "get",
            lambda client: client.secrets.kv.v2.read_secret_version(
                path=path, version=1, mount_point=self._mount, raise_on_deleted_version=True
            ),
        )
        value = _field(response, "data", "data", VALUE_KEY)
        if not isinstance(value, str):
            raise BackendUnavailable(KV_LABEL, "get", BackendFailure.FAILED)
        return Secret(value.encode("utf-8"))

    def destroy(self, secret_id: int, version: int, stored: StoredValue) -> None:
        path = _reference(stored)
        try:
            self._connection.call(
                KV_LABEL,
                "destroy",
                lambda client: client.secrets.kv.v2.delete_metadata_and_all_versions(
                    path=path, mount_point=self._mount
                ),
            )
        except BackendUnavailable as error:
            if error.failure is not BackendFailure.MISSING:
                raise


class TransitKeyService:
    """Wraps and unwraps key material with a Transit key that never leaves Vault."""

    label = TRANSIT_LABEL

    def __init__(self, connection: HashiCorpConnection) -> None:
        self._connection = connection
        self._mount = connection.config.transit_mount
        self._key = connection.config.transit_key

    def wrap(self, material: Secret[bytes]) -> str:
        encoded = base64.b64encode(material.reveal()).decode("ascii")
        response = self._connection.call(
            TRANSIT_LABEL,
            "encrypt",
            lambda client: client.secrets.transit.encrypt_data(
                name=self._key, plaintext=encoded, mount_point=self._mount
            ),
        )
        ciphertext = _field(response, "data", "ciphertext")
        if not isinstance(ciphertext, str) or not ciphertext.startswith("vault:"):
            raise BackendUnavailable(TRANSIT_LABEL, "encrypt", BackendFailure.FAILED)
        return ciphertext

    def unwrap(self, wrapped: str) -> Secret[bytes]:
        response = self._connection.call(
            TRANSIT_LABEL,
            "decrypt",
            lambda client: client.secrets.transit.decrypt_data(
                name=self._key, ciphertext=wrapped, mount_point=self._mount
            ),
        )
        encoded = _field(response, "data", "plaintext")
        try:
            return Secret(base64.b64decode(str(encoded), validate=True))
        except (binascii.Error, ValueError):
            raise BackendUnavailable(TRANSIT_LABEL, "decrypt", BackendFailure.FAILED) from None


def _reference(stored: StoredValue) -> str:
    if stored.reference is None:
        raise ValueError("a HashiCorp Vault value needs its reference")
    return stored.reference


def _field(document: Any, *keys: str) -> Any:
    """Return a nested member of a JSON response, or None when any step is missing."""
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document
