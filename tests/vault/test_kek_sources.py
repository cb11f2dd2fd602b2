"""The base KEK wrapped by HashiCorp Vault Transit (the test server, through hvac) or AWS KMS
(moto's server, through boto3): secrets survive a restart, and a service that is down or refuses
leaves the vault sealed with an audit record instead of falling back to master.key."""

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from llero.config.keyfiles import MASTER_KEY, create_key_files, make_private_dir
from llero.config.settings import KekSourceKind, Settings
from llero.crypto import Secret
from llero.errors import KeyFileError
from llero.storage.db import Database
from llero.vault import keyring as keyring_module
from llero.vault.aws import KMS_ENCRYPTION_CONTEXT
from llero.vault.backends import build_key_service
from llero.vault.errors import VaultSealed
from llero.vault.kek_sources import (
    WRAPPED_MASTER_KEY,
    create_wrapped_master_key,
    load_vault_keyring,
    unwrap_master_key,
)
from llero.vault.keyring import KekSource, kek_id_of, load_keyring
from llero.vault.models import SecretKind
from llero.vault.rotation import rotate_data_keys
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


# KEKs that a rotation adds under an external source.


def _decrypts(server: VaultTestServer) -> int:
    return sum(request.path == "/v1/transit/decrypt/llero" for request in server.state.requests)


def _wrapped_kek(keys_dir: Path, kek_id: str) -> dict[str, Any]:
    path = keys_dir / "kek" / f"{kek_id}.key.wrapped"
    assert path.stat().st_mode & 0o777 == 0o600
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_rotation_wraps_new_kek_with_transit(
    vault_server: VaultTestServer, external_keys_dir: Path, audited_database: Database
) -> None:
    settings = _transit_settings(external_keys_dir, vault_server.url, vault_server.new_token())
    _initialise(settings)
    keyring = load_vault_keyring(settings, audited_database)
    vault = VaultService(audited_database, keyring)
    secret_id = vault.create_secret(
        name="openai", kind=SecretKind.GENERIC, value=Secret(PLANTED)
    ).secret_id

    record = keyring.add_kek()
    rotate_data_keys(audited_database, keyring)
    restarted = load_vault_keyring(settings, audited_database)

    assert record.source is KekSource.WRAPPED
    document = _wrapped_kek(external_keys_dir, record.id)
    assert document["source"] == "hashicorp_transit"
    assert document["wrapped"].startswith("vault:v1:")
    assert not (external_keys_dir / "kek" / f"{record.id}.key").exists()
    kek = keyring.kek(record.id)
    assert kek is not None
    stored = (external_keys_dir / "kek" / f"{record.id}.key.wrapped").read_bytes()
    assert kek.material.reveal() not in stored
    assert base64.b64encode(kek.material.reveal()) not in stored
    assert restarted.current.id == record.id
    assert VaultService(audited_database, restarted).read_plaintext(secret_id).reveal() == PLANTED


def test_rotation_wraps_new_kek_with_kms(
    moto_endpoint: str, external_keys_dir: Path, audited_database: Database
) -> None:
    settings = _kms_settings(external_keys_dir, moto_endpoint)
    _initialise(settings)
    keyring = load_vault_keyring(settings, audited_database)
    secret_id = (
        VaultService(audited_database, keyring)
        .create_secret(name="openai", kind=SecretKind.GENERIC, value=Secret(PLANTED))
        .secret_id
    )

    record = keyring.add_kek()
    rotate_data_keys(audited_database, keyring)
    restarted = load_vault_keyring(settings, audited_database)

    document = _wrapped_kek(external_keys_dir, record.id)
    assert document["source"] == KekSourceKind.AWS_KMS.value
    kms: Any = aws_client(moto_endpoint, "kms")
    plaintext = kms.decrypt(
        CiphertextBlob=base64.b64decode(document["wrapped"]),
        EncryptionContext=KMS_ENCRYPTION_CONTEXT,
    )["Plaintext"]
    assert kek_id_of(plaintext) == record.id
    assert restarted.current.id == record.id
    assert VaultService(audited_database, restarted).read_plaintext(secret_id).reveal() == PLANTED


def test_running_keyring_decrypts_each_new_kek_once(
    vault_server: VaultTestServer, external_keys_dir: Path, audited_database: Database
) -> None:
    settings = _transit_settings(external_keys_dir, vault_server.url, vault_server.new_token())
    _initialise(settings)
    server = load_vault_keyring(settings, audited_database)
    operator = load_vault_keyring(settings, audited_database)

    first = operator.add_kek()
    before_first = _decrypts(vault_server)
    assert server.refresh()
    after_first = _decrypts(vault_server)
    second = operator.add_kek()
    before_second = _decrypts(vault_server)
    assert server.refresh()

    assert after_first - before_first == 1
    assert _decrypts(vault_server) - before_second == 1
    assert server.current.id == second.id
    assert set(server.ids) >= {first.id, second.id}


def test_key_service_down_at_reload_retries_later(
    vault_server: VaultTestServer,
    external_keys_dir: Path,
    audited_database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [time.monotonic()]
    monkeypatch.setattr(keyring_module.time, "monotonic", lambda: clock[0])
    settings = _transit_settings(external_keys_dir, vault_server.url, vault_server.new_token())
    _initialise(settings)
    server = load_vault_keyring(settings, audited_database)
    base_id = server.current.id
    secret_id = (
        VaultService(audited_database, server)
        .create_secret(name="openai", kind=SecretKind.GENERIC, value=Secret(PLANTED))
        .secret_id
    )
    added = load_vault_keyring(settings, audited_database).add_kek()

    vault_server.state.denied.add("transit")
    first = server.refresh()
    requests_after_first = len(vault_server.state.requests)
    second = server.refresh()
    requests_after_second = len(vault_server.state.requests)
    ids_while_down = server.ids
    value_while_down = VaultService(audited_database, server).read_plaintext(secret_id).reveal()
    vault_server.state.denied.clear()
    clock[0] += keyring_module.SERVICE_RETRY_SECONDS
    recovered = server.refresh()

    assert first is False
    assert second is False
    # Within the retry interval the service is not called again.
    assert requests_after_second == requests_after_first
    assert ids_while_down == (base_id,)
    assert value_while_down == PLANTED
    assert recovered is True
    assert server.ids == tuple(sorted({base_id, added.id}))
    assert server.current.id == added.id


def test_wrapped_kek_needs_its_key_service(
    vault_server: VaultTestServer, external_keys_dir: Path, audited_database: Database
) -> None:
    settings = _transit_settings(external_keys_dir, vault_server.url, vault_server.new_token())
    _initialise(settings)
    keyring = load_vault_keyring(settings, audited_database)
    keyring.add_kek()
    service = build_key_service(settings)
    assert service is not None
    base_key = unwrap_master_key(external_keys_dir, service, KekSourceKind.HASHICORP_TRANSIT)

    with pytest.raises(KeyFileError, match="encrypted by an external key service"):
        load_keyring(external_keys_dir, base_key)
