"""Security alerts to the admins: a signed webhook and mail, sent off the request path.

An alert is raised for a burst of failed sign-ins, a refresh-token reuse, a broken audit chain
and an agent quarantine. It is logged, then handed to each configured channel: the webhook
(llero.incident.webhook, LLERO_ALERT_WEBHOOK_URL) and mail to every active admin
(llero.incident.alert_mail, while LLERO_SMTP_HOST is set). Each channel sends from its own
background thread with a timeout, so a slow or dead receiver never delays a request or the other
channel. A failure is logged and never reaches the action that raised the alert.
Alerts carry ids and counts, never a secret.
"""

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from llero.config.settings import Settings
from llero.incident.alert_mail import AdminAddresses, mail_channel_from
from llero.incident.webhook import webhook_channel_from
from llero.logs import get_logger

log = get_logger("llero.alerts")

# Alerts waiting for one channel; more are dropped and logged, so a flood cannot exhaust memory.
QUEUE_MAX = 1000


class AlertKind(StrEnum):
    AGENT_QUARANTINED = "agent_quarantined"
    AUDIT_CHAIN_BROKEN = "audit_chain_broken"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 - an alert name, not a token
    SIGN_IN_FAILURES = "sign_in_failures"


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def body(self) -> bytes:
        document = {
            "alert": self.kind.value,
            "summary": self.summary,
            "detail": self.detail,
            "occurred_at": self.occurred_at.isoformat(),
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


class AlertChannel(Protocol):
    """A way to reach the admins, such as the webhook or mail."""

    # Names the channel in log events, as in "alert:webhook_failed".
    name: str

    @property
    def timeout_seconds(self) -> float:
        """The time one delivery may wait on the network before it fails."""
        ...

    def deliver(self, alert: Alert) -> None:
        """Send ``alert``, raising an exception when it could not be sent."""
        ...


# --- Sending -----------------------------------------------------------------------------------


class AlertSender:
    """Delivers alerts to one channel from its own daemon thread, in the order they were raised."""

    def __init__(self, channel: AlertChannel) -> None:
        self.channel = channel
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        """Queue ``alert`` for the channel and return at once."""
        self._start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            log.warning(
                "alert:dropped",
                alert=alert.kind.value,
                channel=self.channel.name,
                reason="queue_full",
            )

    def stop(self) -> None:
        """Ask the thread to end after it has sent what is queued. ``join`` waits for that."""
        if self._thread is not None:
            self._queue.put(None)

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is None:
            return
        thread.join(max(timeout, 0.0))
        self._thread = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"llero-alerts-{self.channel.name}", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                self.channel.deliver(alert)
            except Exception as error:  # noqa: BLE001 - the thread must outlive any one failure
                # Only the type: an error's text can quote a relay's reply or a database value.
                log.warning(
                    f"alert:{self.channel.name}_failed",
                    alert=alert.kind.value,
                    error=type(error).__name__,
                )


# --- Bursts of failed sign-ins -----------------------------------------------------------------


class FailureBurst:
    """Counts failed sign-ins in a sliding window and reports when they reach the threshold.

    One alert per burst: after reporting, the count starts again, so a sustained attack raises
    one alert per ``threshold`` failures instead of one per failure. The count is per process.
    """

    def __init__(self, threshold: int, window: timedelta) -> None:
        self.threshold = threshold
        self.window = window
        self._times: deque[datetime] = deque()
        self._lock = threading.Lock()

    def record(self, now: datetime) -> int | None:
        """Record one failure; return the count when it reaches the threshold, else None."""
        with self._lock:
            self._times.append(now)
            while self._times and now - self._times[0] > self.window:
                self._times.popleft()
            if len(self._times) < self.threshold:
                return None
            count = len(self._times)
            self._times.clear()
            return count


# --- The alerts of one app or command ----------------------------------------------------------


class SecurityAlerts:
    """The alerts Llero raises, each turned into one message for every channel."""

    def __init__(self, senders: Sequence[AlertSender], failures: FailureBurst) -> None:
        self.senders = tuple(senders)
        self._failures = failures

    def sign_in_failed(self, now: datetime) -> None:
        count = self._failures.record(now)
        if count is not None:
            minutes = int(self._failures.window.total_seconds() // 60)
            self._raise(
                Alert(
                    AlertKind.SIGN_IN_FAILURES,
                    f"{count} failed sign-ins within {minutes} minutes",
                    {
                        "failures": count,
                        "window_seconds": int(self._failures.window.total_seconds()),
                    },
                )
            )

    def refresh_token_reused(self) -> None:
        self._raise(
            Alert(
                AlertKind.REFRESH_TOKEN_REUSED,
                "a spent refresh token was presented again; its session was revoked",
            )
        )

    def agent_quarantined(self, agent_id: int, name: str) -> None:
        self._raise(
            Alert(
                AlertKind.AGENT_QUARANTINED,
                f"agent {name} (id {agent_id}) was quarantined",
                {"agent_id": agent_id, "name": name},
            )
        )

    def audit_chain_broken(self, sequence: int | None, reason: str) -> None:
        where = "the chain head" if sequence is None else f"record {sequence}"
        self._raise(
            Alert(
                AlertKind.AUDIT_CHAIN_BROKEN,
                f"the audit chain is broken at {where} ({reason})",
                {"sequence": sequence, "reason": reason},
            )
        )

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued and stop the threads, waiting at most ``timeout`` seconds.

        The default allows each channel twice its network timeout, since one delivery can wait
        once to connect and again for the reply.
        """
        if timeout is None:
            timeout = 2 * sum(sender.channel.timeout_seconds for sender in self.senders)
        deadline = time.monotonic() + timeout
        for sender in self.senders:
            sender.stop()
        for sender in self.senders:
            sender.join(deadline - time.monotonic())

    def _raise(self, alert: Alert) -> None:
        log.warning("alert:raised", alert=alert.kind.value, summary=alert.summary)
        for sender in self.senders:
            sender.send(alert)


def security_alerts_from(settings: Settings, admin_addresses: AdminAddresses) -> SecurityAlerts:
    """Build the alerts of one app or command; raise SettingsError for a bad webhook setting.

    ``admin_addresses`` returns the addresses that alert mail goes to. It is called on the mail
    channel's thread for each alert mailed, and only while mail is on.
    """
    failures = FailureBurst(
        settings.alert_sign_in_failures, timedelta(seconds=settings.alert_sign_in_window_seconds)
    )
    channels: list[AlertChannel] = []
    webhook = webhook_channel_from(settings)
    if webhook is not None:
        channels.append(webhook)
    mail = mail_channel_from(settings, admin_addresses)
    if mail is not None:
        channels.append(mail)
    return SecurityAlerts([AlertSender(channel) for channel in channels], failures)
