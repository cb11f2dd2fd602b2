"""A server without its master key starts sealed. It logs one line about it, serves only health,
readiness and unseal, and unseals with the right key alone, after a few wrong tries at most."""

import base64
import json
import secrets
from collections.abc import Iterator

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from structlog.typing import EventDict

from llero.audit.service import AuditFilter, query
from llero.config.keyfiles import MASTER_KEY, check_key_files
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.storage.db import Database
from llero.vault.errors import CiphertextInvalid, InvalidReason, UnsealThrottled, VaultSealed
from llero.vault.keyring import add_kek, load_keyring
from llero.vault.models import SecretKind, StoredSecret
from llero.vault.service import VaultService
from llero.vault.unseal import UnsealThrottle
from llero.web.app import create_app
from tests.conftest import FixtureUser

PLANTED_VALUE = "sk-live-PLANTED-sealed-8c1d2e3f4a5b6c7d"
UNSEAL = "/api/vault/unseal"


def _master_key(settings: Settings) -> str:
    return (settings.keys_dir / MASTER_KEY).read_text().strip()


def _store_secret(database: Database, settings: Settings) -> int:
    vault = VaultService(database, load_keyring(settings.keys_dir))
    info = vault.create_secret(
        name="stored-before", kind=SecretKind.GENERIC, value=Secret(PLANTED_VALUE)
    )
    return info.secret_id


@pytest.fixture
def master_key(settings: Settings, database: Database) -> str:
    """The base64 master key of a vault that contains one secret; master.key itself is removed."""
    _store_secret(database, settings)
    key = _master_key(settings)
    (settings.keys_dir / MASTER_KEY).unlink()
    return key


@pytest.fixture
def log_events() -> Iterator[list[EventDict]]:
    with structlog.testing.capture_logs() as events:
        yield events


@pytest.fixture
def sealed_app(settings: Settings, database: Database, master_key: str) -> FastAPI:
    return create_app(settings, database)


@pytest.fixture
def sealed_client(sealed_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(sealed_app, raise_server_exceptions=False) as client:
        yield client


def test_sealed_start_logs_one_line(
    settings: Settings,
    database: Database,
    master_key: str,
    log_events: list[EventDict],
) -> None:
    create_app(settings, database)

    lines = [event for event in log_events if event["event"] == "vault_sealed"]
    assert len(lines) == 1
    assert lines[0]["log_level"] == "warning"
    assert "POST /api/vault/unseal" in lines[0]["message"]
    assert "LLERO_MASTER_KEY" in lines[0]["message"]
    assert master_key not in str(log_events)


def test_sealed_answers_health_and_readiness(sealed_client: TestClient) -> None:
    assert sealed_client.get("/healthz").json() == {"status": "ok"}
    ready = sealed_client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "reason": "sealed"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/secrets"),
        ("POST", "/api/secrets"),
        ("GET", "/api/tools"),
        ("GET", "/api/agents"),
        ("POST", "/api/auth/signin"),
        ("GET", "/api/openapi.json"),
        ("GET", "/.well-known/jwks.json"),
        ("POST", "/api/vault/unseal/"),
        ("GET", "/no/such/route"),
    ],
)
def test_sealed_refuses_every_other_route(
    admin: FixtureUser, sealed_app: FastAPI, sealed_client: TestClient, method: str, path: str
) -> None:
    # The admin is stored before the sealed app starts: a sealed vault cannot seal its email.

    for headers in ({}, admin.headers):
        response = sealed_client.request(method, path, headers=headers, json={})

        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "vault_sealed"
        assert body["message"] == VaultSealed().message
        assert body["request_id"] == response.headers["X-Request-ID"]
        assert response.headers["Retry-After"] == "30"
        assert response.headers["Cache-Control"].startswith("no-store")


def test_unseal_with_key_opens_vault(
    sealed_app: FastAPI, sealed_client: TestClient, database: Database, master_key: str
) -> None:
    response = sealed_client.post(UNSEAL, json={"master_key": master_key})

    assert response.status_code == 200
    assert response.json()["status"] == "unsealed"
    assert master_key not in response.text
    assert sealed_client.get("/readyz").json() == {"status": "ok"}
    assert sealed_client.get("/api/secrets").status_code == 401
    vault: VaultService = sealed_app.state.vault
    with database.reader() as session:
        secret_id = session.scalar(select(StoredSecret.id))
    assert secret_id is not None
    assert vault.read_plaintext(secret_id).reveal() == PLANTED_VALUE
    with database.reader() as session:
        (record,) = query(session, AuditFilter(events=())).records[:1]
    assert record.event == "vault:unsealed"
    assert (record.actor_kind, record.actor_id) == ("system", "unseal")
    assert master_key not in record.detail


def test_unseal_with_wrong_key_rejected_and_audited(
    sealed_app: FastAPI, sealed_client: TestClient, database: Database
) -> None:
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()

    response = sealed_client.post(UNSEAL, json={"master_key": wrong})

    assert response.status_code == 403
    assert response.json()["message"] == "the key does not match the vault's master key"
    assert wrong not in response.text
    assert sealed_app.state.keyring.sealed
    with database.reader() as session:
        record = query(session, AuditFilter(events=())).records[0]
    assert record.event == "vault:unseal_failed"
    assert json.loads(record.detail) == {"reason": "unseal_rejected"}


@pytest.mark.parametrize(
    "value",
    [
        "not base64 at all!",
        base64.b64encode(b"sixteen byte key").decode(),
        base64.b64encode(b"a key of thirty-three bytes, long").decode(),
    ],
    ids=["not-base64", "16-bytes", "33-bytes"],
)
def test_unseal_with_malformed_key_rejected_without_echo(
    sealed_client: TestClient, value: str
) -> None:
    response = sealed_client.post(UNSEAL, json={"master_key": value})

    assert response.status_code == 422
    assert response.json()["details"] == [
        {"field": "body.master_key", "problem": "not a base64 256-bit key"}
    ]
    assert value not in response.text


def test_unseal_throttled_after_failures(
    sealed_app: FastAPI, sealed_client: TestClient, master_key: str
) -> None:
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    statuses = [
        sealed_client.post(UNSEAL, json={"master_key": wrong}).status_code for _ in range(5)
    ]

    throttled = sealed_client.post(UNSEAL, json={"master_key": master_key})

    assert statuses == [403] * 5
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "too_many_attempts"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert sealed_app.state.keyring.sealed


def test_throttle_window_passes() -> None:
    moment = [0.0]
    throttle = UnsealThrottle(limit=2, window=60, clock=lambda: moment[0])
    throttle.record_failure()
    throttle.record_failure()

    with pytest.raises(UnsealThrottled) as caught:
        throttle.check()
    moment[0] = 60.5
    throttle.check()

    assert caught.value.retry_after == 60


def test_unseal_when_unsealed_refused(client: TestClient, settings: Settings) -> None:
    response = client.post(UNSEAL, json={"master_key": _master_key(settings)})

    assert response.status_code == 409
    assert response.json()["message"] == "the vault is not sealed"


def test_fresh_vault_cannot_be_unsealed_over_http(settings: Settings, database: Database) -> None:
    key = _master_key(settings)
    (settings.keys_dir / MASTER_KEY).unlink()

    with TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
        response = client.post(UNSEAL, json={"master_key": key})

    assert response.status_code == 409
    assert response.json()["message"].startswith("nothing stored identifies the master key")


def test_sealed_after_rotation_unseals_with_base_key(
    settings: Settings, database: Database
) -> None:
    key = _master_key(settings)
    add_kek(settings.keys_dir)
    (settings.keys_dir / MASTER_KEY).unlink()
    app = create_app(settings, database)
    assert app.state.keyring.sealed

    with TestClient(app, raise_server_exceptions=False) as client:
        wrong = client.post(
            UNSEAL, json={"master_key": base64.b64encode(secrets.token_bytes(32)).decode()}
        )
        right = client.post(UNSEAL, json={"master_key": key})

    assert wrong.status_code == 403
    assert right.status_code == 200
    assert len(app.state.keyring.ids) == 2


def test_environment_key_starts_unsealed(
    settings: Settings, database: Database, master_key: str
) -> None:
    unsealed = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        master_key=master_key,
    )

    assert not create_app(unsealed, database).state.keyring.sealed


def test_undecryptable_ciphertext_is_internal_error(
    app: FastAPI, client: TestClient, log_events: list[EventDict]
) -> None:
    @app.get("/probe/ciphertext")
    def broken() -> None:
        raise CiphertextInvalid(InvalidReason.UNWRAP_FAILED, kek_id="0123456789abcdef")

    response = client.get("/probe/ciphertext")

    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "internal error",
        "request_id": response.headers["X-Request-ID"],
    }
    (logged,) = [event for event in log_events if event["event"] == "vault:ciphertext_invalid"]
    assert logged["reason"] == "unwrap_failed"
    assert logged["kek_id"] == "0123456789abcdef"


def test_sealed_error_from_service_is_503(app: FastAPI, client: TestClient) -> None:
    @app.get("/probe/sealed")
    def sealed() -> None:
        raise VaultSealed()

    response = client.get("/probe/sealed")

    assert response.status_code == 503
    assert response.json()["error"] == "vault_sealed"


def test_master_key_file_missing_leaves_key_check_passing(settings: Settings) -> None:
    (settings.keys_dir / MASTER_KEY).unlink()

    check_key_files(settings.keys_dir)

    assert not (settings.keys_dir / MASTER_KEY).exists()
