"""Security alerts: the signature, the webhook address rule, and alerts received on 127.0.0.1."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.egress import EgressRefused
from llero.errors import SettingsError
from llero.incident.alerts import FailureBurst, security_alerts_from
from llero.incident.webhook import (
    SIGNATURE_HEADER,
    check_webhook_url,
    sign_body,
    verify_signature,
)
from llero.storage.db import Database
from llero.web.app import create_app
from tests.conftest import create_test_user
from tests.identity.helpers import password_hash, sign_in
from tests.incident.helpers import Received, Receiver, create_agent

SECRET_TEXT = "alert-signing-secret-0123456789abcdef"
SECRET = Secret(SECRET_TEXT.encode())
BODY = b'{"alert":"agent_quarantined"}'
NOW = 1_800_000_000


# --- Signatures --------------------------------------------------------------------------------


def test_signature_round_trip() -> None:
    header = sign_body(BODY, SECRET, NOW)

    assert header.startswith(f"t={NOW},v1=")
    assert verify_signature(BODY, header, SECRET, NOW + 10)


@pytest.mark.parametrize(
    ("body", "secret", "now"),
    [
        (BODY + b" ", SECRET, NOW),
        (BODY, Secret(b"another-secret-of-enough-length-000"), NOW),
        (BODY, SECRET, NOW + 301),
        (BODY, SECRET, NOW - 301),
    ],
    ids=["changed_body", "wrong_secret", "too_old", "from_future"],
)
def test_signature_rejects_tampering(body: bytes, secret: Secret[bytes], now: int) -> None:
    assert not verify_signature(body, sign_body(BODY, SECRET, NOW), secret, now)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", f"t={NOW}", "v1=00", f"t={NOW},v2=00"])
def test_signature_rejects_malformed_header(header: str) -> None:
    assert not verify_signature(BODY, header, SECRET, NOW)


# --- The address rule --------------------------------------------------------------------------


def test_webhook_url_https_public_host_allowed() -> None:
    target = check_webhook_url("https://hooks.example.com/llero", [])

    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)


def test_webhook_url_listed_loopback_http_allowed() -> None:
    target = check_webhook_url("http://127.0.0.1:8125/alerts", ["127.0.0.1:8125"])

    assert (target.scheme, target.host, target.port) == ("http", "127.0.0.1", 8125)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://hooks.example.com/", []),
        ("http://127.0.0.1:8125/", []),
        ("http://127.0.0.1:8126/", ["127.0.0.1:8125"]),
        ("https://127.0.0.1/", []),
        ("https://[::1]/", []),
        ("https://10.1.2.3/", []),
        ("https://192.168.0.10/", []),
        ("https://169.254.169.254/latest/meta-data/", []),
        ("https://[::ffff:169.254.169.254]/", []),
        ("https://user:pass@hooks.example.com/", []),
        ("ftp://hooks.example.com/", []),
        ("https://hooks.example.com/#fragment", []),
        ("file:///etc/passwd", []),
    ],
)
def test_webhook_url_rejected(url: str, loopback: list[str]) -> None:
    with pytest.raises(EgressRefused):
        check_webhook_url(url, loopback)


@pytest.mark.parametrize("endpoint", ["10.0.0.5:80", "169.254.169.254:80", "example.com:80"])
def test_webhook_loopback_setting_must_be_loopback(endpoint: str) -> None:
    with pytest.raises(EgressRefused) as raised:
        check_webhook_url(f"http://{endpoint}/", [endpoint])

    assert "is not a loopback endpoint" in raised.value.message


# --- Bursts ------------------------------------------------------------------------------------


def test_failure_burst_reports_once_per_threshold() -> None:
    burst = FailureBurst(3, timedelta(minutes=5))
    start = datetime(2026, 1, 1, tzinfo=UTC)

    reports = [burst.record(start + timedelta(seconds=index)) for index in range(7)]

    assert reports == [None, None, 3, None, None, 3, None]


def test_failure_burst_forgets_old_failures() -> None:
    burst = FailureBurst(3, timedelta(minutes=5))
    start = datetime(2026, 1, 1, tzinfo=UTC)

    burst.record(start)
    burst.record(start + timedelta(minutes=1))

    assert burst.record(start + timedelta(minutes=7)) is None


# --- Alerts received on 127.0.0.1 --------------------------------------------------------------


@pytest.fixture
def alerting_client(
    settings: Settings, database: Database, receiver: Receiver
) -> Iterator[TestClient]:
    configured = settings.model_copy(
        update={
            "alert_webhook_url": f"http://127.0.0.1:{receiver.port}/hook",
            "alert_webhook_loopback": [f"127.0.0.1:{receiver.port}"],
            "alert_webhook_secret": Secret(SECRET_TEXT) and _secret_str(SECRET_TEXT),
            "alert_sign_in_failures": 3,
        }
    )
    app = create_app(configured, database)
    admin = create_test_user(app, role=Role.ADMIN)
    with TestClient(app, raise_server_exceptions=False, headers=admin.headers) as client:
        yield client
    app.state.alerts.close()


def _secret_str(text: str) -> object:
    from pydantic import SecretStr  # noqa: PLC0415

    return SecretStr(text)


def _alert_of(received: Received) -> dict[str, object]:
    header = received.headers[SIGNATURE_HEADER]
    now = int(datetime.now(UTC).timestamp())
    assert verify_signature(received.body, header, SECRET, now)
    document: dict[str, object] = json.loads(received.body)
    return document


def test_quarantine_alert_reaches_webhook(alerting_client: TestClient, receiver: Receiver) -> None:
    agent = create_agent(alerting_client)

    alerting_client.post(f"/api/agents/{agent['id']}/quarantine", json={"reason": "leak"})

    alert = _alert_of(receiver.next())
    assert alert["alert"] == "agent_quarantined"
    assert alert["detail"] == {"agent_id": agent["id"], "name": "researcher"}


def test_sign_in_burst_alerts_once(alerting_client: TestClient, receiver: Receiver) -> None:
    for _ in range(3):
        response = sign_in(alerting_client, "nobody@example.com", "wrong password here")
        assert response.status_code == 401

    alert = _alert_of(receiver.next())
    assert alert["alert"] == "sign_in_failures"
    assert alert["summary"] == "3 failed sign-ins within 5 minutes"
    assert "wrong password here" not in json.dumps(alert)
    assert receiver.received.empty()


def test_refresh_token_reuse_alerts(
    alerting_client: TestClient, receiver: Receiver, make_user: object
) -> None:
    app = alerting_client.app
    user = create_test_user(app, role=Role.VIEWER, mfa=False, password_hash=password_hash())  # type: ignore[arg-type]
    tokens = sign_in(alerting_client, user.email).json()
    refresh = {"refresh_token": tokens["refresh_token"]}

    assert alerting_client.post("/api/auth/refresh", json=refresh).status_code == 200
    assert alerting_client.post("/api/auth/refresh", json=refresh).status_code == 401

    alert = _alert_of(receiver.next())
    assert alert["alert"] == "refresh_token_reused"
    assert tokens["refresh_token"] not in receiver_text(alert)


def receiver_text(alert: dict[str, object]) -> str:
    return json.dumps(alert)


def test_broken_audit_chain_alerts_from_cli(
    settings: Settings,
    database: Database,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from llero.audit.keys import load_audit_keys  # noqa: PLC0415
    from llero.cli.main import cli  # noqa: PLC0415
    from tests.audit.helpers import append, execute_raw  # noqa: PLC0415

    append(database, load_audit_keys(settings.keys_dir), 3)
    execute_raw(database, "UPDATE audit_events SET detail = '{\"index\": 9}' WHERE sequence = 2")
    monkeypatch.chdir(tmp_path)
    environ = {
        "LLERO_DATA_DIR": str(settings.data_dir),
        "LLERO_DATABASE_URL": database.url,
        "LLERO_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{receiver.port}/hook",
        "LLERO_ALERT_WEBHOOK_LOOPBACK": f"127.0.0.1:{receiver.port}",
        "LLERO_ALERT_WEBHOOK_SECRET": SECRET_TEXT,
    }

    result = CliRunner().invoke(cli, ["audit", "verify"], env=environ, input="")

    assert result.exit_code == 1
    alert = _alert_of(receiver.next())
    assert alert["alert"] == "audit_chain_broken"
    assert alert["detail"]["sequence"] == 2  # type: ignore[index]


def test_webhook_url_setting_checked_at_start(settings: Settings, database: Database) -> None:
    configured = settings.model_copy(
        update={
            "alert_webhook_url": "http://10.0.0.8/hook",
            "alert_webhook_secret": _secret_str(SECRET_TEXT),
        }
    )

    with pytest.raises(SettingsError) as raised:
        create_app(configured, database)

    assert raised.value.message.startswith("invalid setting LLERO_ALERT_WEBHOOK_URL: ")


def test_webhook_needs_secret(settings: Settings) -> None:
    configured = settings.model_copy(update={"alert_webhook_url": "https://hooks.example.com/"})

    with pytest.raises(SettingsError) as raised:
        security_alerts_from(configured, lambda: [])

    assert "needs LLERO_ALERT_WEBHOOK_SECRET" in raised.value.message


def test_short_webhook_secret_rejected(settings: Settings) -> None:
    configured = settings.model_copy(
        update={
            "alert_webhook_url": "https://hooks.example.com/",
            "alert_webhook_secret": _secret_str("short"),
        }
    )

    with pytest.raises(SettingsError) as raised:
        security_alerts_from(configured, lambda: [])

    assert "must be at least 32 characters" in raised.value.message
    assert "short" not in raised.value.message.replace("such as", "")
