"""Alert mail: every alert reaches the webhook and each active admin's mailbox on 127.0.0.1,
a failing relay never breaks the action, and no secret is in a mail."""

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import SecretStr

from llero.access.roles import Role
from llero.audit.keys import load_audit_keys
from llero.cli.main import cli
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.identity.models import UserStatus
from llero.incident.alert_mail import MAIL_INTERVAL, MailChannel
from llero.incident.alerts import Alert, AlertKind, security_alerts_from
from llero.incident.webhook import SIGNATURE_HEADER, verify_signature
from llero.storage.db import Database
from llero.vault.errors import VaultSealed
from llero.web.app import create_app
from tests.audit.helpers import append, execute_raw
from tests.conftest import FixtureUser, create_test_user, with_mail
from tests.identity.helpers import password_hash, sign_in
from tests.incident.helpers import Received, Receiver, create_agent
from tests.smtp_server import LOOPBACK, MailServer, ReceivedMail

WEBHOOK_SECRET = "alert-mail-webhook-secret-0123456789"
WRONG_PASSWORD = "wrong-PLANTED-password-5c1e"
UNKNOWN_EMAIL = "planted-stranger@example.org"


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def _alerting_settings(
    settings: Settings, mail_server: MailServer, receiver: Receiver, **options: object
) -> Settings:
    values: dict[str, object] = {
        "alert_webhook_url": f"http://127.0.0.1:{receiver.port}/hook",
        "alert_webhook_loopback": [f"127.0.0.1:{receiver.port}"],
        "alert_webhook_secret": SecretStr(WEBHOOK_SECRET),
        "alert_sign_in_failures": 3,
    }
    values.update(options)
    return with_mail(settings, mail_server, **values)


def _webhook_alert(received: Received) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    assert verify_signature(
        received.body, received.headers[SIGNATURE_HEADER], Secret(WEBHOOK_SECRET.encode()), now
    )
    document: dict[str, Any] = json.loads(received.body)
    return document


def _raw(mail: ReceivedMail) -> str:
    return mail.message.as_string()


class Admins:
    """The users of an alerting app: who must get alert mail and who must not."""

    def __init__(self, app: Any) -> None:
        self.signed_in = create_test_user(app, role=Role.ADMIN)
        self.second = create_test_user(app, role=Role.ADMIN)
        self.pending = create_test_user(app, role=Role.ADMIN, status=UserStatus.PENDING)
        self.disabled = create_test_user(app, role=Role.ADMIN, status=UserStatus.DISABLED)
        self.developer = create_test_user(app, role=Role.DEVELOPER)

    @property
    def active_emails(self) -> list[str]:
        return sorted([self.signed_in.email, self.second.email])

    @property
    def everyone(self) -> list[FixtureUser]:
        return [self.signed_in, self.second, self.pending, self.disabled, self.developer]


@pytest.fixture
def alerting_app(
    settings: Settings, database: Database, mail_server: MailServer, receiver: Receiver
) -> Any:
    return create_app(_alerting_settings(settings, mail_server, receiver), database)


@pytest.fixture
def admins(alerting_app: Any) -> Admins:
    return Admins(alerting_app)


@pytest.fixture
def admin_client(alerting_app: Any, admins: Admins) -> Iterator[TestClient]:
    with TestClient(
        alerting_app, raise_server_exceptions=False, headers=admins.signed_in.headers
    ) as client:
        yield client


def _assert_mailed_to_active_admins(mails: list[ReceivedMail], admins: Admins) -> None:
    assert sorted(recipient for mail in mails for recipient in mail.recipients) == (
        admins.active_emails
    )
    for mail in mails:
        # Each message names one admin, so no admin sees another's address.
        assert mail.message["To"] == mail.recipients[0]


def _assert_no_secret(mail: ReceivedMail, secrets: list[str]) -> None:
    raw = _raw(mail)
    for secret in secrets:
        assert secret not in raw


# --- Each alert kind reaches the webhook and the mailboxes --------------------------------------


def test_quarantine_alert_mailed_to_active_admins(
    admin_client: TestClient, admins: Admins, mail_server: MailServer, receiver: Receiver
) -> None:
    agent = create_agent(admin_client)

    response = admin_client.post(f"/api/agents/{agent['id']}/quarantine", json={"reason": "leak"})

    assert response.status_code == 200
    assert _webhook_alert(receiver.next())["alert"] == "agent_quarantined"
    mails = mail_server.wait_for(2, timeout=10)
    _assert_mailed_to_active_admins(mails, admins)
    for mail in mails:
        assert mail.message["Subject"] == "Llero security alert: an agent was quarantined"
        assert f"agent researcher (id {agent['id']}) was quarantined" in mail.text
        assert "https://llero.example.com" in mail.text
        _assert_no_secret(mail, [user.access_token for user in admins.everyone])


def test_sign_in_burst_mailed_without_attempted_credentials(
    admin_client: TestClient, admins: Admins, mail_server: MailServer, receiver: Receiver
) -> None:
    for _ in range(3):
        assert sign_in(admin_client, UNKNOWN_EMAIL, WRONG_PASSWORD).status_code == 401

    assert _webhook_alert(receiver.next())["alert"] == "sign_in_failures"
    mails = mail_server.wait_for(2, timeout=10)
    _assert_mailed_to_active_admins(mails, admins)
    for mail in mails:
        assert mail.message["Subject"] == "Llero security alert: many failed sign-ins"
        assert "3 failed sign-ins within 5 minutes" in mail.text
        _assert_no_secret(mail, [WRONG_PASSWORD, UNKNOWN_EMAIL, "planted-stranger"])


def test_refresh_token_reuse_mailed_without_token(
    admin_client: TestClient, admins: Admins, mail_server: MailServer, receiver: Receiver
) -> None:
    app: Any = admin_client.app
    user = create_test_user(app, role=Role.VIEWER, mfa=False, password_hash=password_hash())
    tokens = sign_in(admin_client, user.email).json()
    refresh = {"refresh_token": tokens["refresh_token"]}

    assert admin_client.post("/api/auth/refresh", json=refresh).status_code == 200
    assert admin_client.post("/api/auth/refresh", json=refresh).status_code == 401

    assert _webhook_alert(receiver.next())["alert"] == "refresh_token_reused"
    mails = mail_server.wait_for(2, timeout=10)
    _assert_mailed_to_active_admins(mails, admins)
    for mail in mails:
        assert mail.message["Subject"] == "Llero security alert: a refresh token was reused"
        _assert_no_secret(
            mail,
            [tokens["refresh_token"], tokens["access_token"], user.email, user.access_token],
        )


def test_broken_audit_chain_mailed_from_cli(
    *,
    admins: Admins,
    settings: Settings,
    database: Database,
    mail_server: MailServer,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    append(database, load_audit_keys(settings.keys_dir), 3)
    execute_raw(database, "UPDATE audit_events SET detail = '{\"index\": 9}' WHERE sequence = 2")
    # A working directory without a .env file, so the developer's settings stay out.
    monkeypatch.chdir(settings.data_dir.parent)
    environ = {
        "LLERO_DATA_DIR": str(settings.data_dir),
        "LLERO_DATABASE_URL": database.url,
        "LLERO_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{receiver.port}/hook",
        "LLERO_ALERT_WEBHOOK_LOOPBACK": f"127.0.0.1:{receiver.port}",
        "LLERO_ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LLERO_PUBLIC_URL": "https://llero.example.com",
        "LLERO_SMTP_HOST": LOOPBACK,
        "LLERO_SMTP_PORT": str(mail_server.port),
        "LLERO_SMTP_SECURITY": "none",
        "LLERO_SMTP_FROM": "llero@example.com",
    }

    result = CliRunner().invoke(cli, ["audit", "verify"], env=environ, input="")

    assert result.exit_code == 1
    assert _webhook_alert(receiver.next())["detail"]["sequence"] == 2
    # The command waits for its alerts before it exits, so the mail is there already.
    mails = mail_server.received
    _assert_mailed_to_active_admins(mails, admins)
    for mail in mails:
        assert mail.message["Subject"] == "Llero security alert: the audit chain is broken"
        assert "the audit chain is broken at record 2 (edited)" in mail.text
        assert "llero audit export --since " in mail.text


# --- A failing relay never breaks the action ----------------------------------------------------


def test_down_relay_keeps_action_and_webhook(
    settings: Settings, database: Database, mail_server: MailServer, receiver: Receiver
) -> None:
    down = _alerting_settings(settings, mail_server, receiver, smtp_port=_unused_port())
    app = create_app(down, database)
    admin = create_test_user(app, role=Role.ADMIN)

    with (
        structlog.testing.capture_logs() as events,
        TestClient(app, raise_server_exceptions=False, headers=admin.headers) as client,
    ):
        agent = create_agent(client)
        response = client.post(f"/api/agents/{agent['id']}/quarantine", json={"reason": "leak"})
        for _ in range(3):
            assert sign_in(client, UNKNOWN_EMAIL, WRONG_PASSWORD).status_code == 401
        app.state.alerts.close()

    assert response.status_code == 200
    assert response.json()["status"] == "quarantined"
    kinds = {_webhook_alert(receiver.next())["alert"] for _ in range(2)}
    assert kinds == {"agent_quarantined", "sign_in_failures"}
    failures = [event for event in events if event["event"] == "alert:mail_failed"]
    assert [event["alert"] for event in failures] == ["agent_quarantined", "sign_in_failures"]
    assert {event["error"] for event in failures} == {"MailDeliveryFailed"}
    assert admin.email not in repr(events)
    assert mail_server.received == []


def test_stalled_relay_blocks_neither_request_nor_webhook(
    settings: Settings, database: Database, mail_server: MailServer, receiver: Receiver
) -> None:
    # A relay that accepts the connection and never greets: the mail thread waits for it.
    stalled = socket.socket()
    stalled.bind((LOOPBACK, 0))
    stalled.listen(1)
    port = stalled.getsockname()[1]
    slow = _alerting_settings(settings, mail_server, receiver, smtp_port=port)
    slow = slow.model_copy(update={"smtp_timeout_seconds": 30})
    app = create_app(slow, database)
    admin = create_test_user(app, role=Role.ADMIN)

    with TestClient(app, raise_server_exceptions=False, headers=admin.headers) as client:
        agents = [create_agent(client), create_agent(client, name="second")]
        started = time.monotonic()
        quarantined = [
            client.post(f"/api/agents/{agent['id']}/quarantine", json={"reason": "leak"})
            for agent in agents
        ]
        elapsed = time.monotonic() - started

        webhook_alerts = [_webhook_alert(receiver.next(timeout=10)) for _ in range(2)]
        # Closing the socket fails the waiting connection, so the app can stop.
        stalled.close()

    assert [response.status_code for response in quarantined] == [200, 200]
    assert elapsed < 10
    assert [alert["detail"]["name"] for alert in webhook_alerts] == ["researcher", "second"]


# --- Who gets mail, and when ------------------------------------------------------------------


def test_refused_recipient_does_not_stop_others(settings: Settings) -> None:
    server = MailServer(refused_recipients=frozenset({"gone@example.com"}))
    try:
        configured = with_mail(settings, server)
        channel = MailChannel(configured, lambda: ["gone@example.com", "admin@example.com"])
        alert = Alert(AlertKind.AGENT_QUARANTINED, "agent x (id 1) was quarantined")

        with structlog.testing.capture_logs() as events:
            channel.deliver(alert)

        [mail] = server.wait_for(1)
    finally:
        server.stop()
    assert mail.recipients == ["admin@example.com"]
    refused = [event for event in events if event["event"] == "alert:mail_refused"]
    assert refused == [
        {
            "event": "alert:mail_refused",
            "alert": "agent_quarantined",
            "refused": 1,
            "log_level": "warning",
        }
    ]
    assert "gone@example.com" not in repr(events)


def test_sealed_vault_keeps_webhook(
    settings: Settings, mail_server: MailServer, receiver: Receiver
) -> None:
    def sealed() -> list[str]:
        raise VaultSealed

    alerts = security_alerts_from(_alerting_settings(settings, mail_server, receiver), sealed)

    with structlog.testing.capture_logs() as events:
        alerts.agent_quarantined(7, "researcher")
        alerts.close()

    assert _webhook_alert(receiver.next())["detail"] == {"agent_id": 7, "name": "researcher"}
    failures = [event for event in events if event["event"] == "alert:mail_failed"]
    assert [event["error"] for event in failures] == ["VaultSealed"]
    assert mail_server.received == []


def test_repeated_kind_mailed_once_per_interval(
    settings: Settings, mail_server: MailServer
) -> None:
    channel = MailChannel(with_mail(settings, mail_server), lambda: ["admin@example.com"])
    start = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    moments = [start, start + timedelta(minutes=1), start + timedelta(minutes=2)]
    moments.append(start + MAIL_INTERVAL)

    for moment in moments:
        channel.deliver(Alert(AlertKind.SIGN_IN_FAILURES, "20 failed sign-ins", occurred_at=moment))

    mails = mail_server.wait_for(2)
    assert len(mails) == 2
    assert "held back" not in mails[0].text
    assert "Alerts of this kind held back since the last mail: 2" in mails[1].text


def test_quarantines_never_held_back(settings: Settings, mail_server: MailServer) -> None:
    channel = MailChannel(with_mail(settings, mail_server), lambda: ["admin@example.com"])
    now = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)

    for agent_id in (1, 2, 3):
        channel.deliver(
            Alert(AlertKind.AGENT_QUARANTINED, f"agent {agent_id} quarantined", occurred_at=now)
        )

    assert len(mail_server.wait_for(3)) == 3


def test_no_active_admin_sends_nothing(settings: Settings, mail_server: MailServer) -> None:
    channel = MailChannel(with_mail(settings, mail_server), lambda: [])

    with structlog.testing.capture_logs() as events:
        channel.deliver(Alert(AlertKind.AGENT_QUARANTINED, "agent 1 quarantined"))

    assert [event["event"] for event in events] == ["alert:mail_not_sent"]
    assert mail_server.received == []


@pytest.mark.parametrize(
    ("options", "channels"),
    [
        ({}, ["webhook", "mail"]),
        ({"alert_mail": False}, ["webhook"]),
        ({"alert_webhook_url": None}, ["mail"]),
    ],
    ids=["both", "mail_switched_off", "mail_only"],
)
def test_channels_follow_settings(
    settings: Settings,
    mail_server: MailServer,
    receiver: Receiver,
    options: dict[str, object],
    channels: list[str],
) -> None:
    configured = _alerting_settings(settings, mail_server, receiver, **options)

    alerts = security_alerts_from(configured, lambda: [])

    assert [sender.channel.name for sender in alerts.senders] == channels


def test_no_mail_channel_without_relay(settings: Settings) -> None:
    alerts = security_alerts_from(settings, lambda: ["admin@example.com"])

    assert alerts.senders == ()
