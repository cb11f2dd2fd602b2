"""Outgoing mail through the SMTP relay named in the settings, with the standard library.

Mail is off while LLERO_SMTP_HOST is unset: ``send_mail`` then raises MailUnavailable, whose
message names the feature that needs mail and the setting that turns mail on. The connection
is encrypted with STARTTLS or implicit TLS and the relay's certificate is verified; plain SMTP is
accepted only for a relay on a loopback address, which the settings check at start.

Message bodies carry one-time tokens, so nothing here logs a body, and the SMTP password is read
from its SecretStr only to log in.
"""

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

import structlog

from llero.config.settings import Settings, SmtpSecurity
from llero.errors import LleroError

log = structlog.get_logger("llero.mail")

# RFC 5322 recommends header lines of at most 78 characters; a subject this long still folds.
SUBJECT_MAX = 200
# Bodies are short notices with one link; anything longer is a bug in the caller.
BODY_MAX = 64 * 1024


class MailUnavailable(LleroError):
    """Mail is off because no relay is configured; the web layer returns 503."""

    code = "mail_unavailable"

    def __init__(self, feature: str) -> None:
        super().__init__(
            f"{feature} sends mail, and no mail server is configured; an admin sets "
            "LLERO_SMTP_HOST to turn mail on"
        )


class MailDeliveryFailed(LleroError):
    """The relay could not be reached or did not accept the message."""

    code = "mail_delivery_failed"


def build_message(settings: Settings, to: str, subject: str, text: str) -> EmailMessage:
    """Build a plain-text message from LLERO_SMTP_FROM; raise ValueError for an unsafe header."""
    sender = settings.smtp_from
    if sender is None:
        raise MailUnavailable("this action")
    if len(subject) > SUBJECT_MAX or len(text) > BODY_MAX:
        raise ValueError(f"mail subject or body is longer than {SUBJECT_MAX} or {BODY_MAX}")
    for value in (to, subject):
        # A line break in a header would let a caller's value add headers or recipients.
        if "\r" in value or "\n" in value:
            raise ValueError("mail headers must not contain line breaks")

    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    # make_msgid looks up the host's own name unless given a domain, and lookups stay off here.
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message.set_content(text)
    return message


def send_mail(settings: Settings, to: str, subject: str, text: str) -> None:
    """Send one plain-text message and wait for the relay to accept it.

    Raises MailUnavailable when mail is off and MailDeliveryFailed when the relay cannot be
    reached, the TLS handshake or login fails, or the relay rejects the message. Blocks on the
    network: code on the event loop calls ``send_mail_async`` instead.
    """
    host = _relay_host(settings)
    message = build_message(settings, to, subject, text)
    try:
        with _connect(settings, host) as smtp:
            _log_in(settings, smtp)
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        raise _delivery_failed(error, host) from None
    log.info("mail:sent", host=host, subject=subject)


def send_mail_each(
    settings: Settings, recipients: Sequence[str], subject: str, text: str
) -> list[str]:
    """Send the same plain-text message to each recipient separately, over one connection.

    Each message is addressed to one recipient, so no recipient sees the others' addresses.
    Returns the recipients that the relay refused, after trying the rest. Raises MailUnavailable
    when mail is off, and MailDeliveryFailed when the relay cannot be reached, the TLS handshake
    or login fails, or the connection breaks. Messages sent before a break stay sent. Blocks on
    the network, like ``send_mail``.
    """
    host = _relay_host(settings)
    messages = [(to, build_message(settings, to, subject, text)) for to in recipients]
    refused: list[str] = []
    try:
        with _connect(settings, host) as smtp:
            _log_in(settings, smtp)
            for to, message in messages:
                try:
                    smtp.send_message(message)
                except smtplib.SMTPRecipientsRefused:
                    # smtplib has reset the transaction, so the connection takes the next one.
                    refused.append(to)
    except (smtplib.SMTPException, OSError) as error:
        raise _delivery_failed(error, host) from None
    log.info(
        "mail:sent",
        host=host,
        subject=subject,
        messages=len(messages) - len(refused),
        refused=len(refused),
    )
    return refused


async def send_mail_async(settings: Settings, to: str, subject: str, text: str) -> None:
    """``send_mail`` in a worker thread, so waiting for the relay never blocks the event loop."""
    await asyncio.to_thread(send_mail, settings, to, subject, text)


def _relay_host(settings: Settings) -> str:
    host = settings.smtp_host
    if host is None:
        raise MailUnavailable("this action")
    return host


def _log_in(settings: Settings, smtp: smtplib.SMTP) -> None:
    if settings.smtp_username is not None and settings.smtp_password is not None:
        smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())


def _delivery_failed(error: smtplib.SMTPException | OSError, host: str) -> MailDeliveryFailed:
    # The error's text can quote the relay's reply, which may echo the message; the type and
    # SMTP status code are enough to act on.
    status = getattr(error, "smtp_code", None)
    log.warning("mail:send_failed", error=type(error).__name__, smtp_code=status, host=host)
    return MailDeliveryFailed(
        f"the mail server did not accept the message ({type(error).__name__})"
    )


def _connect(settings: Settings, host: str) -> smtplib.SMTP:
    port = settings.resolved_smtp_port
    timeout = settings.smtp_timeout_seconds
    # smtplib otherwise greets the relay with socket.getfqdn(), a DNS lookup of this host.
    local_name = _local_hostname(settings)

    if settings.smtp_security is SmtpSecurity.TLS:
        return smtplib.SMTP_SSL(
            host, port, local_hostname=local_name, timeout=timeout, context=_tls_context(settings)
        )
    smtp = smtplib.SMTP(host, port, local_hostname=local_name, timeout=timeout)
    try:
        if settings.smtp_security is SmtpSecurity.STARTTLS:
            # Raises SMTPNotSupportedError when the relay offers no STARTTLS, so a relay (or an
            # attacker on the path) that strips the offer gets nothing in clear.
            smtp.starttls(context=_tls_context(settings))
    except BaseException:
        smtp.close()
        raise
    return smtp


def _tls_context(settings: Settings) -> ssl.SSLContext:
    ca_file = None if settings.smtp_ca_file is None else str(settings.smtp_ca_file)
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _local_hostname(settings: Settings) -> str:
    hostname = urlsplit(settings.public_url or "").hostname
    return hostname or "localhost"


__all__ = [
    "MailDeliveryFailed",
    "MailUnavailable",
    "build_message",
    "send_mail",
    "send_mail_async",
    "send_mail_each",
]
