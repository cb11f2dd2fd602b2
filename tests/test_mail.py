"""The mailer: messages reach a real SMTP server on 127.0.0.1 over plain SMTP (loopback only),
STARTTLS and implicit TLS with a verified certificate, with and without a login, and the
password and bodies stay out of the logs."""

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from llero.config.settings import Settings, SmtpSecurity, check_safe_to_serve, load_settings
from llero.errors import SettingsError
from llero.mail import (
    MailDeliveryFailed,
    MailUnavailable,
    build_message,
    send_mail,
    send_mail_async,
    send_mail_each,
)
from tests.conftest import with_mail
from tests.smtp_server import LOOPBACK, MailServer, RelayCertificate, make_relay_certificate

SMTP_PASSWORD = "smtp-PLANTED-pass-41d9"
BODY_TOKEN = "llero_el_PLANTEDbodytoken7f3e"


@pytest.fixture
def certificate(tmp_path: Path) -> RelayCertificate:
    return make_relay_certificate(tmp_path)


@pytest.fixture
def starttls_server(certificate: RelayCertificate) -> Iterator[MailServer]:
    server = MailServer(certificate=certificate, credentials=("llero", SMTP_PASSWORD))
    yield server
    server.stop()


@pytest.fixture
def tls_server(certificate: RelayCertificate) -> Iterator[MailServer]:
    server = MailServer(certificate=certificate, implicit_tls=True)
    yield server
    server.stop()


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def test_send_mail_delivers_plain_text(settings: Settings, mail_server: MailServer) -> None:
    send_mail(with_mail(settings, mail_server), "Ada@Example.com", "Hello", "First line\n")

    [mail] = mail_server.wait_for(1)
    assert mail.mail_from == "llero@example.com"
    assert mail.recipients == ["Ada@Example.com"]
    assert mail.message["Subject"] == "Hello"
    assert mail.message["From"] == "llero@example.com"
    assert mail.message["Message-ID"].endswith("@example.com>")
    assert mail.text == "First line\n"
    assert not mail.encrypted


def test_send_mail_async_delivers(settings: Settings, mail_server: MailServer) -> None:
    asyncio.run(send_mail_async(with_mail(settings, mail_server), "b@example.com", "Hi", "Body"))

    [mail] = mail_server.wait_for(1)
    assert mail.recipients == ["b@example.com"]


def test_send_mail_each_addresses_one_recipient_apiece(
    settings: Settings, mail_server: MailServer
) -> None:
    recipients = ["a@example.com", "b@example.com", "c@example.com"]

    refused = send_mail_each(with_mail(settings, mail_server), recipients, "Alert", "Body\n")

    assert refused == []
    mails = mail_server.wait_for(3)
    assert [mail.recipients for mail in mails] == [[to] for to in recipients]
    assert [mail.message["To"] for mail in mails] == recipients
    assert {mail.text for mail in mails} == {"Body\n"}


def test_send_mail_each_returns_refused_and_sends_rest(settings: Settings) -> None:
    server = MailServer(refused_recipients=frozenset({"gone@example.com"}))
    try:
        recipients = ["gone@example.com", "here@example.com"]

        refused = send_mail_each(with_mail(settings, server), recipients, "Alert", "Body")

        mails = server.wait_for(1)
    finally:
        server.stop()
    assert refused == ["gone@example.com"]
    assert [mail.recipients for mail in mails] == [["here@example.com"]]


def test_send_mail_each_unreachable_relay_fails(
    settings: Settings, mail_server: MailServer
) -> None:
    configured = with_mail(settings, mail_server, smtp_port=_unused_port())

    with pytest.raises(MailDeliveryFailed) as caught:
        send_mail_each(configured, ["h@example.com"], "Hello", "Body")

    assert caught.value.message == (
        "the mail server did not accept the message (ConnectionRefusedError)"
    )


def test_starttls_with_login_verifies_certificate(
    settings: Settings,
    starttls_server: MailServer,
    certificate: RelayCertificate,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configured = with_mail(
        settings,
        starttls_server,
        smtp_security="starttls",
        smtp_username="llero",
        smtp_password=SMTP_PASSWORD,
        smtp_ca_file=certificate.ca_file,
    )

    send_mail(configured, "c@example.com", "Reset", f"Open #token={BODY_TOKEN}")

    [mail] = starttls_server.wait_for(1)
    assert mail.encrypted
    assert mail.login == "llero"
    assert BODY_TOKEN in mail.text
    logged = caplog.text + "".join(capsys.readouterr())
    assert SMTP_PASSWORD not in logged
    assert BODY_TOKEN not in logged
    assert SMTP_PASSWORD not in repr(configured)


def test_starttls_rejects_untrusted_certificate(
    settings: Settings, starttls_server: MailServer
) -> None:
    # Without the test CA the relay's certificate cannot be verified, and nothing is sent.
    configured = with_mail(settings, starttls_server, smtp_security="starttls")

    with pytest.raises(MailDeliveryFailed) as caught:
        send_mail(configured, "d@example.com", "Hello", "Body")

    assert "SSLCertVerificationError" in caught.value.message
    assert starttls_server.received == []


def test_starttls_fails_when_relay_offers_none(settings: Settings, mail_server: MailServer) -> None:
    configured = with_mail(settings, mail_server, smtp_security="starttls")

    with pytest.raises(MailDeliveryFailed) as caught:
        send_mail(configured, "e@example.com", "Hello", "Body")

    assert "SMTPNotSupportedError" in caught.value.message
    assert mail_server.received == []


def test_implicit_tls_delivers(
    settings: Settings, tls_server: MailServer, certificate: RelayCertificate
) -> None:
    configured = with_mail(
        settings, tls_server, smtp_security="tls", smtp_ca_file=certificate.ca_file
    )

    send_mail(configured, "f@example.com", "Hello", "Body")

    [mail] = tls_server.wait_for(1)
    assert mail.encrypted


def test_wrong_login_fails_without_password_in_message(
    settings: Settings, starttls_server: MailServer, certificate: RelayCertificate
) -> None:
    configured = with_mail(
        settings,
        starttls_server,
        smtp_security="starttls",
        smtp_username="llero",
        smtp_password="not-" + SMTP_PASSWORD,
        smtp_ca_file=certificate.ca_file,
    )

    with pytest.raises(MailDeliveryFailed) as caught:
        send_mail(configured, "g@example.com", "Hello", "Body")

    assert caught.value.message == (
        "the mail server did not accept the message (SMTPAuthenticationError)"
    )
    assert starttls_server.received == []


def test_unreachable_relay_fails(settings: Settings, mail_server: MailServer) -> None:
    configured = with_mail(settings, mail_server, smtp_port=_unused_port())

    with pytest.raises(MailDeliveryFailed) as caught:
        send_mail(configured, "h@example.com", "Hello", "Body")

    assert caught.value.message == (
        "the mail server did not accept the message (ConnectionRefusedError)"
    )


def test_mail_off_without_host(settings: Settings) -> None:
    assert not settings.mail_enabled

    with pytest.raises(MailUnavailable) as caught:
        send_mail(settings, "i@example.com", "Hello", "Body")

    assert "LLERO_SMTP_HOST" in caught.value.message


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ("j@example.com\r\nBcc: k@example.com", "Hello"),
        ("j@example.com", "Hello\nBcc: k@example.com"),
    ],
)
def test_header_line_break_rejected(
    settings: Settings, mail_server: MailServer, to: str, subject: str
) -> None:
    with pytest.raises(ValueError, match="line breaks"):
        build_message(with_mail(settings, mail_server), to, subject, "Body")


# --- Settings ------------------------------------------------------------------------------------


@pytest.fixture
def _empty_working_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory, so no developer .env is read."""
    monkeypatch.chdir(tmp_path)


def _load_error(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> str:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        check_safe_to_serve(load_settings())
    message = caught.value.message
    assert "\n" not in message
    return message


MAIL_BASE = {
    "LLERO_PUBLIC_URL": "https://llero.example.com",
    "LLERO_SMTP_FROM": "llero@example.com",
}


@pytest.mark.parametrize("host", ["mail.example.com", "10.0.0.5", "localhost"])
@pytest.mark.usefixtures("_empty_working_dir")
def test_plain_smtp_beyond_loopback_stops_start(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    message = _load_error(
        monkeypatch, {**MAIL_BASE, "LLERO_SMTP_HOST": host, "LLERO_SMTP_SECURITY": "none"}
    )

    assert message.startswith("invalid setting LLERO_SMTP_SECURITY: none sends mail and the SMTP")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_plain_smtp_on_loopback_allowed(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.chdir(Path(__file__).parent)
    for name, value in {
        **MAIL_BASE,
        "LLERO_SMTP_HOST": host,
        "LLERO_SMTP_SECURITY": "none",
    }.items():
        monkeypatch.setenv(name, value)

    loaded = load_settings()

    assert loaded.smtp_security is SmtpSecurity.NONE
    assert loaded.resolved_smtp_port == 25


def test_mail_defaults_are_off_and_encrypted() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]

    assert not defaults.mail_enabled
    assert defaults.smtp_security is SmtpSecurity.STARTTLS
    assert defaults.resolved_smtp_port == 587


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"LLERO_SMTP_HOST": "mail.example.com", "LLERO_SMTP_FROM": "llero@example.com"},
            "invalid setting LLERO_SMTP_HOST: mail needs LLERO_PUBLIC_URL",
        ),
        (
            {**MAIL_BASE, "LLERO_SMTP_HOST": "mail.example.com", "LLERO_SMTP_FROM": ""},
            "invalid setting LLERO_SMTP_FROM: must be an email address",
        ),
        (
            {
                "LLERO_PUBLIC_URL": "https://llero.example.com",
                "LLERO_SMTP_HOST": "mail.example.com",
            },
            "invalid setting LLERO_SMTP_FROM: is required when LLERO_SMTP_HOST is set",
        ),
        (
            {**MAIL_BASE, "LLERO_SMTP_HOST": "mail.example.com", "LLERO_SMTP_USERNAME": "llero"},
            "invalid setting LLERO_SMTP_PASSWORD: is required when LLERO_SMTP_USERNAME is set",
        ),
        (
            {**MAIL_BASE, "LLERO_SMTP_HOST": "mail.example.com", "LLERO_SMTP_PASSWORD": "x"},
            "invalid setting LLERO_SMTP_PASSWORD: needs LLERO_SMTP_USERNAME as well",
        ),
        (
            {"LLERO_PUBLIC_URL": "http://llero.example.com"},
            "invalid setting LLERO_PUBLIC_URL: must use https unless it is a loopback address",
        ),
        (
            {"LLERO_PUBLIC_URL": "https://llero.example.com/?next=x"},
            "invalid setting LLERO_PUBLIC_URL: must not have a query, fragment or user",
        ),
        (
            {**MAIL_BASE, "LLERO_SMTP_HOST": "mail.example.com", "LLERO_SMTP_SECURITY": "ssl"},
            "invalid setting LLERO_SMTP_SECURITY: ",
        ),
    ],
)
@pytest.mark.usefixtures("_empty_working_dir")
def test_bad_mail_setting_stops_start(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: str
) -> None:
    message = _load_error(monkeypatch, environ)

    assert message.startswith(expected)


@pytest.mark.usefixtures("_empty_working_dir")
def test_smtp_password_not_in_setting_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _load_error(monkeypatch, {"LLERO_SMTP_PASSWORD": SMTP_PASSWORD})

    assert SMTP_PASSWORD not in message
