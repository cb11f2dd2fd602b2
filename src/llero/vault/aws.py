"""AWS through boto3: Secrets Manager holds secret values, KMS wraps the base KEK.

Credentials come from boto3's usual chain (environment, shared files, an instance or task role);
Llero never reads or logs them. ``endpoint_url`` points both clients at another endpoint, such as
a VPC endpoint or, in the tests, moto's server on 127.0.0.1.
"""

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from llero.crypto import Secret, random_token
from llero.vault.errors import BackendFailure, BackendUnavailable
from llero.vault.values import Backend, StoredValue

if TYPE_CHECKING:
    # Type stubs from the dev dependencies; the running code needs only boto3.
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

SECRETS_MANAGER_LABEL = "AWS Secrets Manager"
KMS_LABEL = "AWS KMS"

# Bound into every KMS ciphertext Llero makes, so KMS refuses to decrypt a blob made for another
# purpose with the same key, and CloudTrail shows what each decryption was for.
KMS_ENCRYPTION_CONTEXT = {"llero": "vault base kek"}

# Error codes that mean the credentials or the key policy do not allow the call.
_REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "KMSInvalidStateException",
        "UnrecognizedClientException",
    }
)
_MISSING_CODES = frozenset({"ResourceNotFoundException", "NotFoundException"})

Result = TypeVar("Result")


@dataclass(frozen=True)
class AwsConfig:
    """Where and how Llero calls AWS; built from the LLERO_AWS_* settings."""

    region: str
    endpoint_url: str | None = None
    secrets_prefix: str = "llero/"
    kms_key_id: str | None = None
    timeout_seconds: int = 5


def secrets_manager_client(config: AwsConfig) -> "SecretsManagerClient":
    return boto3.session.Session().client(
        "secretsmanager",
        region_name=config.region,
        endpoint_url=config.endpoint_url,
        config=_client_config(config),
    )


def kms_client(config: AwsConfig) -> "KMSClient":
    return boto3.session.Session().client(
        "kms",
        region_name=config.region,
        endpoint_url=config.endpoint_url,
        config=_client_config(config),
    )


def _client_config(config: AwsConfig) -> botocore.config.Config:
    """Retry once at most, so a down endpoint fails within about two timeouts."""
    return botocore.config.Config(
        connect_timeout=config.timeout_seconds,
        read_timeout=config.timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": 2},
    )


def call(label: str, operation: str, action: Callable[[], Result]) -> Result:
    """Run one AWS call; raise BackendUnavailable naming ``label`` when it fails."""
    try:
        return action()
    except botocore.exceptions.ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _REFUSED_CODES:
            failure = BackendFailure.REFUSED
        elif code in _MISSING_CODES:
            failure = BackendFailure.MISSING
        else:
            failure = BackendFailure.FAILED
        raise BackendUnavailable(label, operation, failure, status=status) from None
    except (
        botocore.exceptions.NoCredentialsError,
        botocore.exceptions.PartialCredentialsError,
        botocore.exceptions.CredentialRetrievalError,
    ):
        raise BackendUnavailable(label, operation, BackendFailure.REFUSED) from None
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError):
        raise BackendUnavailable(label, operation, BackendFailure.UNREACHABLE) from None
    except botocore.exceptions.BotoCoreError:
        raise BackendUnavailable(label, operation, BackendFailure.FAILED) from None


class SecretsManagerStore:
    """Secret values in AWS Secrets Manager, one AWS secret per Llero secret version.

    The AWS secret's name is ``<prefix><secret id>/<version>-<random>``. CreateSecret fails on a
    name that exists, so no value is ever replaced, and the random part keeps names unique even
    when the database reuses a secret id after a rollback.
    """

    backend = Backend.AWS

    def __init__(self, config: AwsConfig) -> None:
        self._client = secrets_manager_client(config)
        self._prefix = config.secrets_prefix

    def put(self, secret_id: int, version: int, value: Secret[bytes]) -> StoredValue:
        name = f"{self._prefix}{secret_id}/{version}-{random_token(16)}"
        call(
            SECRETS_MANAGER_LABEL,
            "put",
            lambda: self._client.create_secret(
                Name=name,
                SecretString=value.reveal().decode("utf-8"),
                Description=f"Llero secret {secret_id}, version {version}",
            ),
        )
        return StoredValue(Backend.AWS, reference=name)

    def get(self, secret_id: int, version: int, stored: StoredValue) -> Secret[bytes]:
        name = _reference(stored)
        response = call(
            SECRETS_MANAGER_LABEL,
            "get",
            lambda: self._client.get_secret_value(SecretId=name),
        )
        value = response.get("SecretString")
        if not isinstance(value, str):
            raise BackendUnavailable(SECRETS_MANAGER_LABEL, "get", BackendFailure.FAILED)
        return Secret(value.encode("utf-8"))

    def destroy(self, secret_id: int, version: int, stored: StoredValue) -> None:
        name = _reference(stored)
        try:
            call(
                SECRETS_MANAGER_LABEL,
                "destroy",
                lambda: self._client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True),
            )
        except BackendUnavailable as error:
            if error.failure is not BackendFailure.MISSING:
                raise


class KmsKeyService:
    """Wraps and unwraps key material with a KMS key that never leaves KMS."""

    label = KMS_LABEL

    def __init__(self, config: AwsConfig) -> None:
        if not config.kms_key_id:
            raise ValueError("AWS KMS needs a key id")
        self._client = kms_client(config)
        self._key_id = config.kms_key_id

    def wrap(self, material: Secret[bytes]) -> str:
        response = call(
            KMS_LABEL,
            "encrypt",
            lambda: self._client.encrypt(
                KeyId=self._key_id,
                Plaintext=material.reveal(),
                EncryptionContext=KMS_ENCRYPTION_CONTEXT,
            ),
        )
        return base64.b64encode(response["CiphertextBlob"]).decode("ascii")

    def unwrap(self, wrapped: str) -> Secret[bytes]:
        try:
            blob = base64.b64decode(wrapped, validate=True)
        except (binascii.Error, ValueError):
            raise BackendUnavailable(KMS_LABEL, "decrypt", BackendFailure.FAILED) from None
        response = call(
            KMS_LABEL,
            "decrypt",
            lambda: self._client.decrypt(
                CiphertextBlob=blob,
                KeyId=self._key_id,
                EncryptionContext=KMS_ENCRYPTION_CONTEXT,
            ),
        )
        return Secret(bytes(response["Plaintext"]))


def _reference(stored: StoredValue) -> str:
    if stored.reference is None:
        raise ValueError("an AWS Secrets Manager value needs its reference")
    return stored.reference
