"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 with a port the system picks.

It keeps every message it accepts, so a test reads the mail that Llero sent. With a certificate
it offers STARTTLS or implicit TLS, and with credentials it requires AUTH over TLS. Recipients
listed as refused get a 550 reply, as from a relay that has no such mailbox.
"""

import datetime
import email
import email.policy
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: the envelope as the client sent it, and the parsed message."""

    mail_from: str
    recipients: list[str]
    message: EmailMessage
    # Whether the message came over a TLS connection (STARTTLS or implicit TLS).
    encrypted: bool
    # The user name the client logged in with, or None without AUTH.
    login: str | None

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        content: str = body.get_content()
        # SMTP carries CRLF line ends; the text reads as it was written.
        return content.replace("\r\n", "\n")


class _Handler:
    def __init__(self, *, implicit_tls: bool, refused: frozenset[str]) -> None:
        # aiosmtpd fills session.ssl only after STARTTLS, so implicit TLS is known from here.
        self.implicit_tls = implicit_tls
        self.refused = refused
        self.received: list[ReceivedMail] = []
        self.arrived = threading.Condition()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            recipients=list(envelope.rcpt_tos),
            message=message,
            encrypted=session.ssl is not None or self.implicit_tls,
            login=login,
        )
        with self.arrived:
            self.received.append(mail)
            self.arrived.notify_all()
        return "250 Message accepted"


class _Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.username = username.encode()
        self.password = password.encode()

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        matches = auth_data.login == self.username and auth_data.password == self.password
        if not matches:
            # handled=False makes aiosmtpd reply 535; handled=True would send no reply at all.
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)


class _LoopbackController(Controller):
    """A controller that binds port 0 and learns the real port before it probes the server."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class MailServer:
    """A running SMTP server on 127.0.0.1; stop it with ``stop``."""

    def __init__(
        self,
        *,
        certificate: "RelayCertificate | None" = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        refused_recipients: frozenset[str] = frozenset(),
    ) -> None:
        self._handler = _Handler(
            implicit_tls=implicit_tls and certificate is not None, refused=refused_recipients
        )
        server_context = None if certificate is None else certificate.server_context()
        options: dict[str, Any] = {}
        if credentials is not None:
            options["authenticator"] = _Authenticator(*credentials)
            options["auth_required"] = True
        if server_context is not None and not implicit_tls:
            options["tls_context"] = server_context
            options["require_starttls"] = True
        self._controller = _LoopbackController(
            self._handler,
            hostname=LOOPBACK,
            port=0,
            ssl_context=server_context if implicit_tls else None,
            server_hostname="mail.test",
            # aiosmtpd waits 5 seconds by default, which a busy test machine can exceed.
            ready_timeout=30.0,
            **options,
        )
        self._controller.start()

    @property
    def port(self) -> int:
        port: int = self._controller.port
        return port

    @property
    def received(self) -> list[ReceivedMail]:
        with self._handler.arrived:
            return list(self._handler.received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Return the received mail once at least ``count`` messages have arrived."""
        with self._handler.arrived:
            self._handler.arrived.wait_for(lambda: len(self._handler.received) >= count, timeout)
            return list(self._handler.received)

    def stop(self) -> None:
        self._controller.stop()


@dataclass(frozen=True)
class RelayCertificate:
    """A private CA and a server certificate it signed for 127.0.0.1, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_relay_certificate(directory: Path) -> RelayCertificate:
    """Create a CA and a server certificate for IP 127.0.0.1 in ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Llero test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    server_cert = (
        _builder(server_name, ca_name, server_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    paths = RelayCertificate(directory / "ca.pem", directory / "server.pem", directory / "key.pem")
    paths.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths.key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
