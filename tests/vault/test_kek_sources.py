"""The base KEK wrapped by HashiCorp Vault Transit (the test server, through hvac) or AWS KMS
(moto's server, through boto3): secrets survive a restart, and a service that is down or refuses
leaves the vault sealed with an audit record instead of falling back to master.key."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from llero.config.keyfiles import MASTER_KEY, create_key_files, make_private_dir
from llero.config.settings import KekSourceKind, Settings
from llero.crypto import Secret
from llero.errors import KeyFileError
from llero.storage.db import Database
from llero.vault.aws import KMS_ENCRYPTION_CONTEXT
from llero.vault.backends import build_key_service
from llero.vault.errors import VaultSealed
from llero.vault.kek_sources import (
    WRAPPED_MASTER_KEY,
    create_wrapped_master_key,
    load_vault_keyring,
)
from llero.vault.models import SecretKind
from llero.vault.service import VaultService
from tests.vault.conftest import PLANTED, REGION, aws_client, backend_failures
from tests.vault.hashicorp_server import VaultTestServer


@pytest.fixture
def external_keys_dir(tmp_path: Path) -> Path:
    """A key directory as `llero init` makes it for an external KEK source: no master.key."""
    path = tmp_path / "external" / "keys"
    make_private_dir(path.parent)
    create_key_files(path, master_key=False)
    return path


def _settings(keys_dir: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=keys_dir.parent, **values)  # type: ignore[call-arg]


def _transit_settings(keys_dir: Path, url: str, token: str) -> Settings:
    return _settings(
        keys_dir, vault_kek_source="hashicorp_transit", hashicorp_url=url, hashicorp_token=token
    )


def _initialise(settings: Settings) -> None:
    service = build_key_service(settings)
    assert service is not None
    assert create_wrapped_master_key(settings.keys_dir, service, settings.vault_kek_source)


def _store_and_reopen(settings: Settings, database: Database) -> None:
    """Store a secret, then read it with a keyring loaded afresh, as after a restart."""
    first = VaultService(database, load_vault_keyring(settings, database))
    secret_id = first.create_secret(
        name="openai", kind=SecretKind.PROVIDER_API_KEY, value=Secret(PLANTED)
    ).secret_id
    second = VaultService(database, load_vault_keyring(settings, database))
    assert second.read_plaintext(secret_id).reveal() == PLANTED


def test_transit_wraps_master_key(
    vault_server: VaultTestServer, external_keys_dir: Path, audited_database: Database
) -> None:
    token = vault_server.new_token()
    settings = _transit_settings(external_keys_dir, vault_server.url, token)

    _initialise(settings)
    _store_and_reopen(settings, audited_database)

    document = json.loads((external_keys_dir / WRAPPED_MASTER_KEY).read_text())
    assert document["source"] == "hashicorp_transit"
    assert document["wrapped"].startswith("vault:v1:")
    assert (external_keys_dir / WRAPPED_MASTER_KEY).stat().st_mode & 0o777 == 0o600
    assert not (external_keys_dir / MASTER_KEY).exists()
    paths = {(request.method, request.path) for request in vault_server.state.requests}
    assert paths == {("POST", "/v1/transit/encrypt/llero"), ("POST", "/v1/transit/decrypt/llero")}
    assert all(request.token == token for request in vault_server.state.requests)
    encrypt = vault_server.state.requests[0]
    assert set(encrypt.body) == {"plaintext"}


def test_transit_refusal_leaves_vault_sealed(
    vault_server: VaultTestServer, external_keys_dir: Path, audited_database: Database
) -> None:
    settings = _transit_settings(external_keys_dir, vault_server.url, vault_server.new_token())
    _initialise(settings)
    vault_server.state.denied.add("transit")

    keyring = load_vault_keyring(settings, audited_database)

    assert keyring.sealed
    with pytest.raises(VaultSealed):
        VaultService(audited_database, keyring).create_secret(
            name="openai", kind=SecretKind.GENERIC, value=Secret(PLANTED)
        )
    [(_, detail)] = backend_failures(audited_database)
    assert detail == {
        "backend": "HashiCorp Vault Transit",
        "failure": "refused",
        "operation": "decrypt",
        "status": 403,
    }


def test_transit_down_leaves_vault_sealed(
    vault_server: VaultTestServer,
    closed_port: int,
    external_keys_dir: Path,
    audited_database: Database,
) -> None:
    _initialise(_transit_settings(external_keys_dir, vault_server.url, vault_server.new_token()))
    down = _transit_settings(external_keys_dir, f"http://127.0.0.1:{closed_port}", "hvs.x")

    assert load_vault_keyring(down, audited_database).sealed
    [(_, detail)] = backend_failures(audited_database)
    assert detail["failure"] == "unreachable"


def test_master_key_beside_external_source_rejected(
    vault_server: VaultTestServer, keys_dir: Path
) -> None:
    settings = _transit_settings(keys_dir, vault_server.url, vault_server.new_token())

    with pytest.raises(KeyFileError, match=r"master\.key exists"):
        load_vault_keyring(settings)


def test_wrapped_key_of_other_source_rejected(
    vault_server: VaultTestServer, external_keys_dir: Path, moto_endpoint: str
) -> None:
    _initialise(_transit_settings(external_keys_dir, vault_server.url, vault_server.new_token()))
    kms: Any = aws_client(moto_endpoint, "kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    settings = _settings(
        external_keys_dir,
        vault_kek_source="aws_kms",
        aws_region=REGION,
        aws_endpoint_url=moto_endpoint,
        aws_kms_key_id=key_id,
    )

    with pytest.raises(KeyFileError, match="wrapped by hashicorp_transit"):
        load_vault_keyring(settings)


def _kms_settings(keys_dir: Path, endpoint: str) -> Settings:
    kms: Any = aws_client(endpoint, "kms")
    key_id = kms.create_key(Description="llero test")["KeyMetadata"]["KeyId"]
    return _settings(
        keys_dir,
        vault_kek_source="aws_kms",
        aws_region=REGION,
        aws_endpoint_url=endpoint,
        aws_kms_key_id=key_id,
    )


def test_kms_wraps_master_key(
    moto_endpoint: str, external_keys_dir: Path, audited_database: Database
) -> None:
    settings = _kms_settings(external_keys_dir, moto_endpoint)

    _initialise(settings)
    _store_and_reopen(settings, audited_database)

    document = json.loads((external_keys_dir / WRAPPED_MASTER_KEY).read_text())
    assert document["source"] == KekSourceKind.AWS_KMS.value
    blob = base64.b64decode(document["wrapped"])
    kms: Any = aws_client(moto_endpoint, "kms")
    assert (
        len(kms.decrypt(CiphertextBlob=blob, EncryptionContext=KMS_ENCRYPTION_CONTEXT)["Plaintext"])
        == 32
    )
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=blob)


def test_kms_down_leaves_vault_sealed(
    moto_endpoint: str, closed_port: int, external_keys_dir: Path, audited_database: Database
) -> None:
    settings = _kms_settings(external_keys_dir, moto_endpoint)
    _initialise(settings)
    down = settings.model_copy(update={"aws_endpoint_url": f"http://127.0.0.1:{closed_port}"})

    assert load_vault_keyring(down, audited_database).sealed
    [(_, detail)] = backend_failures(audited_database)
    assert (detail["backend"], detail["failure"]) == ("AWS KMS", "unreachable")
