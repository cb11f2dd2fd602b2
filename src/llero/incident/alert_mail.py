"""Security alerts mailed to every active admin, through the SMTP relay of llero.mail.

The addresses are read when an alert is sent, on the sender's thread, so the list is current and
no request waits for the database or the relay. They are sealed fields, so reading them needs
the field keys and an unsealed vault: while the vault is sealed, alerts reach the log and the
webhook but no mailbox.

The text is made from the alert alone: its summary, its detail (ids, counts and names, never a
token, key, password or the address of a user involved) and where to look next.

An attacker can raise failed sign-in and reused refresh token alerts at will. So each of these
kinds is mailed at most once every MAIL_INTERVAL, and an attack cannot flood the admins'
mailboxes or use up the relay's quota. The webhook and the log still get each alert.
"""

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from llero.config.settings import Settings
from llero.identity.service import active_admin_emails
from llero.logs import get_logger
from llero.mail import send_mail_each
from llero.storage.db import Database

if TYPE_CHECKING:
    # Only for annotations: llero.incident.alerts imports this module to build its channels.
    from llero.incident.alerts import Alert

log = get_logger("llero.alerts")

MAIL_INTERVAL = timedelta(minutes=10)

_SUBJECTS = {
    "agent_quarantined": "Llero security alert: an agent was quarantined",
    "audit_chain_broken": "Llero security alert: the audit chain is broken",
    "refresh_token_reused": "Llero security alert: a refresh token was reused",
    "sign_in_failures": "Llero security alert: many failed sign-ins",
}
# The kinds an outsider can raise as often as they like.
_THROTTLED = frozenset({"refresh_token_reused", "sign_in_failures"})

AdminAddresses = Callable[[], Sequence[str]]


def admin_addresses_in(database: Database) -> AdminAddresses:
    """Return a function that reads the active admins' addresses from ``database``.

    The sessions of ``database`` must have the field keys attached, as the app's do.
    """

    def read() -> list[str]:
        with database.reader() as session:
            return active_admin_emails(session)

    return read


class MailChannel:
    """Mails each alert to every active admin, one message each, over one SMTP connection."""

    name = "mail"

    def __init__(self, settings: Settings, admin_addresses: AdminAddresses) -> None:
        self._settings = settings
        self._admin_addresses = admin_addresses
        self._lock = threading.Lock()
        # Per throttled kind: when it was last mailed, and how many were held back since.
        self._last_mailed: dict[str, datetime] = {}
        self._held_back: dict[str, int] = {}

    @property
    def timeout_seconds(self) -> float:
        return float(self._settings.smtp_timeout_seconds)

    def deliver(self, alert: "Alert") -> None:
        """Mail ``alert`` to the active admins unless it is held back by MAIL_INTERVAL.

        Raises MailDeliveryFailed when the relay fails, and the vault's errors when the
        addresses cannot be opened.
        """
        kind = alert.kind.value
        held_back = self._claim_slot(kind, alert.occurred_at)
        if held_back is None:
            log.info("alert:mail_held_back", alert=kind)
            return
        recipients = list(self._admin_addresses())
        if not recipients:
            log.warning("alert:mail_not_sent", alert=kind, reason="no_active_admin")
            return
        text = alert_mail_text(alert, self._settings, held_back)
        refused = send_mail_each(self._settings, recipients, _SUBJECTS[kind], text)
        if refused:
            # The count only: the addresses are confidential and stay out of the log.
            log.warning("alert:mail_refused", alert=kind, refused=len(refused))
        log.info("alert:mail_sent", alert=kind, recipients=len(recipients) - len(refused))

    def _claim_slot(self, kind: str, now: datetime) -> int | None:
        """Return how many alerts of ``kind`` were held back since its last mail, or None."""
        if kind not in _THROTTLED:
            return 0
        with self._lock:
            last = self._last_mailed.get(kind)
            if last is not None and now - last < MAIL_INTERVAL:
                self._held_back[kind] = self._held_back.get(kind, 0) + 1
                return None
            self._last_mailed[kind] = now
            return self._held_back.pop(kind, 0)


def alert_mail_text(alert: "Alert", settings: Settings, held_back: int = 0) -> str:
    """Return the plain text of the mail for ``alert``, which contains no secret."""
    lines = [
        "Llero raised a security alert.",
        "",
        f"What happened: {alert.summary}",
        f"When: {alert.occurred_at.isoformat(timespec='seconds')}",
        f"Alert: {alert.kind.value}",
    ]
    if settings.public_url is not None:
        lines.append(f"Llero: {settings.public_url}")
    for name, value in sorted(alert.detail.items()):
        lines.append(f"{name}: {value}")
    lines.append("")
    if held_back:
        lines.append(f"Alerts of this kind held back since the last mail: {held_back}")
    if alert.kind.value in _THROTTLED:
        minutes = int(MAIL_INTERVAL.total_seconds() // 60)
        lines.append(
            f"Alerts of this kind are mailed at most once every {minutes} minutes, but the "
            "log and the webhook get each one."
        )
    since = (alert.occurred_at - timedelta(hours=1)).isoformat(timespec="seconds")
    lines.append(f"The audit trail has the events around it: llero audit export --since {since}")
    return "\n".join(lines) + "\n"


def mail_channel_from(settings: Settings, admin_addresses: AdminAddresses) -> MailChannel | None:
    """Build the mail channel, or None while mail is off or LLERO_ALERT_MAIL is false."""
    if not settings.mail_enabled or not settings.alert_mail:
        return None
    return MailChannel(settings, admin_addresses)
