"""Build the value store and the key service that the settings select.

Nothing here falls back: a selected backend whose settings are incomplete raises SettingsError,
and one that fails at run time raises BackendUnavailable from the store itself.
"""

from pathlib import Path

from pydantic import SecretStr

from llero.config.keyfiles import read_private_file
from llero.config.settings import (
    HashiCorpAuthKind,
    KekSourceKind,
    Settings,
    VaultBackend,
    check_vault_backends,
)
from llero.crypto import Secret
from llero.errors import KeyFileError
from llero.vault.aws import AwsConfig, KmsKeyService, SecretsManagerStore
from llero.vault.hashicorp import (
    HashiCorpAuth,
    HashiCorpConfig,
    HashiCorpConnection,
    HashiCorpKvStore,
    TransitKeyService,
)
from llero.vault.keyring import Keyring
from llero.vault.values import BuiltinValueStore, ValueStore


def build_value_store(settings: Settings, keyring: Keyring) -> ValueStore:
    """Return the store LLERO_VAULT_BACKEND selects; raise SettingsError when it is incomplete."""
    check_vault_backends(settings)
    if settings.vault_backend is VaultBackend.HASHICORP:
        return HashiCorpKvStore(HashiCorpConnection(hashicorp_config(settings)))
    if settings.vault_backend is VaultBackend.AWS:
        return SecretsManagerStore(aws_config(settings))
    return BuiltinValueStore(keyring)


def build_key_service(settings: Settings) -> TransitKeyService | KmsKeyService | None:
    """Return the service LLERO_VAULT_KEK_SOURCE selects, or None for the key file."""
    check_vault_backends(settings)
    if settings.vault_kek_source is KekSourceKind.HASHICORP_TRANSIT:
        return TransitKeyService(HashiCorpConnection(hashicorp_config(settings)))
    if settings.vault_kek_source is KekSourceKind.AWS_KMS:
        return KmsKeyService(aws_config(settings))
    return None


def hashicorp_config(settings: Settings) -> HashiCorpConfig:
    if settings.hashicorp_url is None:
        raise ValueError("check_vault_backends lets no HashiCorp setup through without a URL")
    approle = settings.hashicorp_auth is HashiCorpAuthKind.APPROLE
    return HashiCorpConfig(
        url=settings.hashicorp_url,
        auth=HashiCorpAuth.APPROLE if approle else HashiCorpAuth.TOKEN,
        token=None
        if approle
        else _credential(settings.hashicorp_token, settings.hashicorp_token_file),
        role_id=settings.hashicorp_role_id,
        secret_id=_credential(settings.hashicorp_secret_id, settings.hashicorp_secret_id_file)
        if approle
        else None,
        approle_mount=settings.hashicorp_approle_mount,
        kv_mount=settings.hashicorp_kv_mount,
        path_prefix=settings.hashicorp_path_prefix,
        transit_mount=settings.hashicorp_transit_mount,
        transit_key=settings.hashicorp_transit_key,
        ca_cert=settings.hashicorp_ca_cert,
        timeout_seconds=settings.hashicorp_timeout_seconds,
    )


def aws_config(settings: Settings) -> AwsConfig:
    if settings.aws_region is None:
        raise ValueError("check_vault_backends lets no AWS setup through without a region")
    return AwsConfig(
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        secrets_prefix=settings.aws_secrets_prefix,
        kms_key_id=settings.aws_kms_key_id,
        timeout_seconds=settings.aws_timeout_seconds,
    )


def _credential(value: SecretStr | None, path: Path | None) -> Secret[str]:
    """Return a token or secret id from its setting, or from its file (which must be 0600)."""
    if value is not None:
        return Secret(value.get_secret_value())
    if path is None:
        raise ValueError("check_vault_backends requires the value or its file")
    text = read_private_file(path).decode("utf-8").strip()
    if not text:
        raise KeyFileError(f"credential file {path} is empty")
    return Secret(text)
