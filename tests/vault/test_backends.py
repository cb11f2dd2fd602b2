"""Secret values in HashiCorp Vault (the test server, through hvac) and AWS Secrets Manager
(moto's server, through boto3): round trips, and a backend that is down or refuses fails the call
with BackendUnavailable and an audit record, and never falls back to the built-in store."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from llero.config.settings import Settings
from llero.crypto import Secret
from llero.errors import SettingsError
from llero.storage.db import Database
from llero.vault.aws import AwsConfig, SecretsManagerStore
from llero.vault.backends import build_value_store
from llero.vault.errors import BackendFailure, BackendUnavailable
from llero.vault.hashicorp import (
    HashiCorpAuth,
    HashiCorpConfig,
    HashiCorpConnection,
    HashiCorpKvStore,
)
from llero.vault.keyring import Keyring
from llero.vault.models import SecretKind, SecretVersion, StoredSecret
from llero.vault.service import VaultService
from llero.vault.values import Backend, BuiltinValueStore
from tests.vault.conftest import (
    PLANTED,
    REGION,
    aws_client,
    backend_failures,
)
from tests.vault.hashicorp_server import VaultTestServer


def _kv_store(url: str, token: str) -> HashiCorpKvStore:
    config = HashiCorpConfig(url=url, auth=HashiCorpAuth.TOKEN, token=Secret(token))
    return HashiCorpKvStore(HashiCorpConnection(config))


def _approle_store(url: str, role_id: str, secret_id: str) -> HashiCorpKvStore:
    config = HashiCorpConfig(
        url=url, auth=HashiCorpAuth.APPROLE, role_id=role_id, secret_id=Secret(secret_id)
    )
    return HashiCorpKvStore(HashiCorpConnection(config))


def _create(vault: VaultService, name: str = "openai", value: str = PLANTED) -> int:
    return vault.create_secret(
        name=name, kind=SecretKind.PROVIDER_API_KEY, value=Secret(value)
    ).secret_id


def _row(database: Database, secret_id: int, version: int = 1) -> SecretVersion:
    with database.reader() as session:
        row = session.scalars(
            select(SecretVersion).where(
                SecretVersion.secret_id == secret_id, SecretVersion.version == version
            )
        ).one()
        session.expunge(row)
        return row


def _secret_count(database: Database) -> int:
    with database.reader() as session:
        return session.scalar(select(func.count()).select_from(StoredSecret)) or 0


def _dump_versions(database: Database) -> str:
    with database.reader() as session:
        rows = session.execute(text("SELECT * FROM secret_versions")).all()
    return repr(rows)


# HashiCorp Vault KV version 2.


def test_hashicorp_round_trip_keeps_value_out_of_database(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    token = vault_server.new_token()
    vault = VaultService(audited_database, keyring, _kv_store(vault_server.url, token))

    secret_id = _create(vault)

    assert vault.read_plaintext(secret_id).reveal() == PLANTED
    row = _row(audited_database, secret_id)
    assert row.backend == "hashicorp"
    assert row.envelope is None
    assert row.kek_id is None
    assert row.reference is not None
    assert row.reference.startswith(f"llero/{secret_id}/1-")
    assert vault_server.state.kv[row.reference] == [{"value": PLANTED}]
    assert PLANTED not in _dump_versions(audited_database)


def test_hashicorp_requests_follow_kv_v2_api(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    token = vault_server.new_token()
    vault = VaultService(audited_database, keyring, _kv_store(vault_server.url, token))

    secret_id = _create(vault)
    vault.read_plaintext(secret_id)
    vault.destroy_version(secret_id, 1)

    reference = _row(audited_database, secret_id).reference
    seen = [(request.method, request.path) for request in vault_server.state.requests]
    assert seen == [
        ("POST", f"/v1/secret/data/{reference}"),
        ("GET", f"/v1/secret/data/{reference}"),
        ("DELETE", f"/v1/secret/metadata/{reference}"),
    ]
    assert all(request.token == token for request in vault_server.state.requests)
    write = vault_server.state.requests[0]
    assert write.body == {"data": {"value": PLANTED}, "options": {"cas": 0}}


def test_hashicorp_destroy_removes_value(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    vault = VaultService(
        audited_database, keyring, _kv_store(vault_server.url, vault_server.new_token())
    )
    secret_id = _create(vault)
    reference = _row(audited_database, secret_id).reference

    info = vault.destroy_version(secret_id, 1)

    assert info.destroyed
    assert reference not in vault_server.state.kv
    assert _row(audited_database, secret_id).reference == reference


def test_hashicorp_approle_signs_in_once(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    vault_server.state.approle["role-1"] = "secret-id-PLANTED-41b7"
    store = _approle_store(vault_server.url, "role-1", "secret-id-PLANTED-41b7")
    vault = VaultService(audited_database, keyring, store)

    secret_id = _create(vault)
    vault.read_plaintext(secret_id)

    login, *calls = vault_server.state.requests
    assert (login.method, login.path) == ("POST", "/v1/auth/approle/login")
    assert login.body == {"role_id": "role-1", "secret_id": "secret-id-PLANTED-41b7"}
    assert len(calls) == 2
    assert all(call.token in vault_server.state.tokens for call in calls)


def test_hashicorp_approle_signs_in_again_after_403(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    vault_server.state.approle["role-1"] = "secret-id-1"
    vault = VaultService(
        audited_database, keyring, _approle_store(vault_server.url, "role-1", "secret-id-1")
    )
    secret_id = _create(vault)
    vault_server.state.tokens.clear()  # the token expired

    assert vault.read_plaintext(secret_id).reveal() == PLANTED
    logins = [r for r in vault_server.state.requests if r.path == "/v1/auth/approle/login"]
    assert len(logins) == 2


def test_hashicorp_wrong_secret_id_refused(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    vault_server.state.approle["role-1"] = "the-right-secret-id"
    vault = VaultService(
        audited_database, keyring, _approle_store(vault_server.url, "role-1", "wrong-PLANTED-id")
    )

    with pytest.raises(BackendUnavailable) as caught:
        _create(vault)

    assert caught.value.failure is BackendFailure.REFUSED
    assert caught.value.operation == "login"
    assert "wrong-PLANTED-id" not in caught.value.message
    assert _secret_count(audited_database) == 0
    [(target, detail)] = backend_failures(audited_database)
    assert target is None
    assert detail["failure"] == "refused"
    assert detail["name"] == "openai"


def test_hashicorp_refusal_fails_read_with_audit(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    token = vault_server.new_token()
    vault = VaultService(audited_database, keyring, _kv_store(vault_server.url, token))
    secret_id = _create(vault)
    vault_server.state.denied.add("secret")

    with pytest.raises(BackendUnavailable) as caught:
        vault.read_plaintext(secret_id)

    error = caught.value
    assert (error.failure, error.status, error.operation) == (BackendFailure.REFUSED, 403, "get")
    assert error.message == (
        "the vault backend HashiCorp Vault refused the request (check its credentials and "
        "policy); see the server log"
    )
    assert token not in error.message
    [(target, detail)] = backend_failures(audited_database)
    assert target == str(secret_id)
    assert detail == {
        "backend": "HashiCorp Vault",
        "failure": "refused",
        "operation": "get",
        "status": 403,
        "version": 1,
    }
    assert _row(audited_database, secret_id).last_used_at is None


def test_hashicorp_down_fails_create_without_fallback(
    closed_port: int, audited_database: Database, keyring: Keyring
) -> None:
    vault = VaultService(
        audited_database, keyring, _kv_store(f"http://127.0.0.1:{closed_port}", "hvs.unused")
    )

    with pytest.raises(BackendUnavailable) as caught:
        _create(vault)

    assert caught.value.failure is BackendFailure.UNREACHABLE
    assert caught.value.message == (
        "the vault backend HashiCorp Vault cannot be reached; see the server log"
    )
    assert _secret_count(audited_database) == 0
    assert _dump_versions(audited_database) == "[]"
    [(_, detail)] = backend_failures(audited_database)
    assert (detail["operation"], detail["failure"]) == ("put", "unreachable")


def test_hashicorp_refused_destroy_keeps_version(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    vault = VaultService(
        audited_database, keyring, _kv_store(vault_server.url, vault_server.new_token())
    )
    secret_id = _create(vault)
    vault_server.state.denied.add("secret")

    with pytest.raises(BackendUnavailable):
        vault.destroy_version(secret_id, 1)

    assert not _row(audited_database, secret_id).destroyed
    vault_server.state.denied.clear()
    assert vault.read_plaintext(secret_id).reveal() == PLANTED


def test_value_deleted_in_vault_reported_missing(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    vault = VaultService(
        audited_database, keyring, _kv_store(vault_server.url, vault_server.new_token())
    )
    secret_id = _create(vault)
    vault_server.state.kv.clear()

    with pytest.raises(BackendUnavailable) as caught:
        vault.read_plaintext(secret_id)

    assert (caught.value.failure, caught.value.status) == (BackendFailure.MISSING, 404)


def test_builtin_versions_stay_readable_after_switch(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    builtin = VaultService(audited_database, keyring)
    secret_id = _create(builtin)
    external = VaultService(
        audited_database, keyring, _kv_store(vault_server.url, vault_server.new_token())
    )

    external.add_version(secret_id, Secret("sk-second-value-in-hashicorp-0001"))

    assert external.read_plaintext(secret_id, 1).reveal() == PLANTED
    assert external.read_plaintext(secret_id, 2).reveal() == "sk-second-value-in-hashicorp-0001"
    assert [info.backend for info in external.list_versions(secret_id)] == [
        "builtin",
        "hashicorp",
    ]


def test_external_version_not_read_without_its_backend(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring
) -> None:
    external = VaultService(
        audited_database, keyring, _kv_store(vault_server.url, vault_server.new_token())
    )
    secret_id = _create(external)
    builtin = VaultService(audited_database, keyring)

    with pytest.raises(BackendUnavailable) as caught:
        builtin.read_plaintext(secret_id)

    assert caught.value.failure is BackendFailure.NOT_CONFIGURED
    assert "HashiCorp Vault" in caught.value.message


# AWS Secrets Manager.


def _aws_store(endpoint: str) -> SecretsManagerStore:
    return SecretsManagerStore(AwsConfig(region=REGION, endpoint_url=endpoint))


def test_aws_round_trip_and_destroy(
    moto_endpoint: str, audited_database: Database, keyring: Keyring
) -> None:
    vault = VaultService(audited_database, keyring, _aws_store(moto_endpoint))
    client: Any = aws_client(moto_endpoint, "secretsmanager")

    secret_id = _create(vault)
    name = _row(audited_database, secret_id).reference

    assert name is not None
    assert name.startswith(f"llero/{secret_id}/1-")
    assert client.get_secret_value(SecretId=name)["SecretString"] == PLANTED
    assert vault.read_plaintext(secret_id).reveal() == PLANTED
    assert PLANTED not in _dump_versions(audited_database)

    vault.destroy_version(secret_id, 1)

    assert client.list_secrets()["SecretList"] == []


def test_aws_down_fails_read_with_audit(
    moto_endpoint: str, closed_port: int, audited_database: Database, keyring: Keyring
) -> None:
    secret_id = _create(VaultService(audited_database, keyring, _aws_store(moto_endpoint)))
    down = VaultService(audited_database, keyring, _aws_store(f"http://127.0.0.1:{closed_port}"))

    with pytest.raises(BackendUnavailable) as caught:
        down.read_plaintext(secret_id)

    assert caught.value.failure is BackendFailure.UNREACHABLE
    assert "AWS Secrets Manager" in caught.value.message
    [(target, detail)] = backend_failures(audited_database)
    assert target == str(secret_id)
    assert detail["failure"] == "unreachable"


class _AccessDenied(BaseHTTPRequestHandler):
    """Answers every call as Secrets Manager does when IAM denies it (JSON 1.1 protocol)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(
            {"__type": "AccessDeniedException", "Message": "not authorized to perform this"}
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def denying_endpoint(aws_environment: None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AccessDenied)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_aws_refusal_fails_create_with_audit(
    denying_endpoint: str, audited_database: Database, keyring: Keyring
) -> None:
    vault = VaultService(audited_database, keyring, _aws_store(denying_endpoint))

    with pytest.raises(BackendUnavailable) as caught:
        _create(vault)

    assert (caught.value.failure, caught.value.status) == (BackendFailure.REFUSED, 403)
    assert _secret_count(audited_database) == 0
    [(_, detail)] = backend_failures(audited_database)
    assert detail["backend"] == "AWS Secrets Manager"


# Settings select the store.


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]


def test_settings_select_store(tmp_path: Path, keyring: Keyring, aws_environment: None) -> None:
    assert isinstance(build_value_store(_settings(tmp_path), keyring), BuiltinValueStore)
    hashicorp = _settings(
        tmp_path,
        vault_backend="hashicorp",
        hashicorp_url="http://127.0.0.1:8200",
        hashicorp_token="hvs.example",
    )
    assert build_value_store(hashicorp, keyring).backend is Backend.HASHICORP
    aws = _settings(tmp_path, vault_backend="aws", aws_region=REGION)
    assert build_value_store(aws, keyring).backend is Backend.AWS


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"vault_backend": "hashicorp"}, "LLERO_HASHICORP_URL: set the Vault server's URL"),
        (
            {"vault_backend": "hashicorp", "hashicorp_url": "http://127.0.0.1:8200"},
            "LLERO_HASHICORP_TOKEN: set LLERO_HASHICORP_TOKEN or LLERO_HASHICORP_TOKEN_FILE",
        ),
        (
            {
                "vault_backend": "hashicorp",
                "hashicorp_url": "http://vault.internal:8200",
                "hashicorp_token": "hvs.example",
            },
            "LLERO_HASHICORP_URL: must use https unless the host is loopback",
        ),
        (
            {
                "vault_backend": "hashicorp",
                "hashicorp_url": "https://127.0.0.1:8200",
                "hashicorp_auth": "approle",
            },
            "LLERO_HASHICORP_ROLE_ID: AppRole auth needs the role id",
        ),
        ({"vault_backend": "aws"}, "LLERO_AWS_REGION: set the AWS region"),
        (
            {
                "vault_backend": "aws",
                "aws_region": REGION,
                "aws_endpoint_url": "http://secretsmanager.example.com",
            },
            "LLERO_AWS_ENDPOINT_URL: must use https unless the host is loopback",
        ),
    ],
)
def test_incomplete_backend_settings_rejected(
    tmp_path: Path, keyring: Keyring, values: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        build_value_store(_settings(tmp_path, **values), keyring)


def test_token_and_token_file_both_rejected(tmp_path: Path, keyring: Keyring) -> None:
    settings = _settings(
        tmp_path,
        vault_backend="hashicorp",
        hashicorp_url="https://127.0.0.1:8200",
        hashicorp_token="hvs.PLANTED-token",
        hashicorp_token_file=tmp_path / "token",
    )

    with pytest.raises(SettingsError) as caught:
        build_value_store(settings, keyring)

    assert "not both" in caught.value.message
    assert "PLANTED" not in caught.value.message


def test_token_file_read_and_used(
    vault_server: VaultTestServer, audited_database: Database, keyring: Keyring, tmp_path: Path
) -> None:
    token = vault_server.new_token()
    token_file = tmp_path / "vault-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    settings = _settings(
        tmp_path,
        vault_backend="hashicorp",
        hashicorp_url=vault_server.url,
        hashicorp_token_file=token_file,
    )
    vault = VaultService(audited_database, keyring, build_value_store(settings, keyring))

    _create(vault)

    assert vault_server.state.requests[0].token == token
