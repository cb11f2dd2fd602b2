"""Security alerts to the admins: a signed webhook, sent off the request path.

An alert is raised for a burst of failed sign-ins, a refresh-token reuse, a broken audit chain
and an agent quarantine. Each is posted as JSON to LLERO_ALERT_WEBHOOK_URL by one background
thread, with a timeout, so a slow or dead receiver never delays a request.

The body is signed with HMAC-SHA256 over ``"{timestamp}." + body`` and sent as
``X-Llero-Signature: t=<unix seconds>,v1=<hex>``. A receiver recomputes the HMAC, compares in
constant time and rejects an old timestamp, so a captured alert cannot be replayed later.
Alerts carry ids and counts, never a secret.
"""

import asyncio
import hashlib
import hmac
import ipaddress
import json
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx

from llero.config.keyfiles import read_private_file
from llero.config.settings import Settings
from llero.crypto import Secret, constant_time_equals
from llero.egress import EgressPolicy, EgressRefused, Endpoint, Target, check_url, guarded_client
from llero.errors import SettingsError
from llero.logs import get_logger

log = get_logger("llero.alerts")

SIGNATURE_HEADER = "X-Llero-Signature"
EVENT_HEADER = "X-Llero-Alert"
SIGNATURE_VERSION = "v1"
# The maximum age of a signed timestamp that a receiver accepts.
DEFAULT_TOLERANCE = timedelta(minutes=5)
DEFAULT_TIMEOUT_SECONDS = 5.0
# Alerts waiting for the sender; more are dropped and logged, so a flood cannot exhaust memory.
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


# --- Signatures --------------------------------------------------------------------------------


def sign_body(body: bytes, secret: Secret[bytes], timestamp: int) -> str:
    """Return the X-Llero-Signature value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.reveal(), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"t={timestamp},{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(
    body: bytes,
    header: str,
    secret: Secret[bytes],
    now: int,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> bool:
    """Return whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance``."""
    parts = dict(item.partition("=")[::2] for item in header.split(",") if "=" in item)
    timestamp, signature = parts.get("t", ""), parts.get(SIGNATURE_VERSION, "")
    if not timestamp.isdigit() or not signature:
        return False
    if abs(now - int(timestamp)) > tolerance.total_seconds():
        return False
    expected = sign_body(body, secret, int(timestamp)).rpartition("=")[2]
    return constant_time_equals(expected, signature)


# --- Where alerts may go -----------------------------------------------------------------------


def check_webhook_url(url: str, loopback_endpoints: Iterable[str]) -> Target:
    """Return the target of the alert webhook URL; raise EgressRefused when it may not be used.

    The URL must be https to a public host. Plain http, and private addresses, are allowed only
    for the loopback ``host:port`` endpoints listed, so a test receiver or a local relay works
    while nothing can point alerts at the internal network. Nothing is resolved here.
    """
    endpoints = frozenset(Endpoint.parse(item) for item in loopback_endpoints)
    for endpoint in endpoints:
        if not _is_loopback(endpoint.host):
            raise EgressRefused(
                f"{endpoint} is not a loopback endpoint; only loopback hosts may receive alerts "
                "over plain http"
            )
    host = (httpx.URL(url).host if url.isascii() else "").lower()
    policy = EgressPolicy(allowed_hosts=frozenset({host}), allowed_endpoints=endpoints)
    return check_url(url, policy)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- Sending -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: Secret[bytes]
    loopback_endpoints: tuple[str, ...] = ()
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS


class AlertSender:
    """Posts alerts to the webhook from one daemon thread, in the order they were raised."""

    def __init__(self, config: WebhookConfig | None) -> None:
        self._config = config
        self._policy: EgressPolicy | None = None
        if config is not None:
            target = check_webhook_url(config.url, config.loopback_endpoints)
            self._policy = EgressPolicy(
                allowed_hosts=frozenset({target.host}),
                allowed_endpoints=frozenset(
                    Endpoint.parse(item) for item in config.loopback_endpoints
                ),
            )
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._config is not None

    def send(self, alert: Alert) -> None:
        """Queue ``alert`` for the webhook and return at once."""
        log.warning("alert:raised", alert=alert.kind.value, summary=alert.summary)
        if self._config is None:
            return
        self._start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            log.warning("alert:dropped", alert=alert.kind.value, reason="queue_full")

    def close(self, timeout: float = DEFAULT_TIMEOUT_SECONDS * 2) -> None:
        """Send what is queued, waiting at most ``timeout`` seconds, and stop the thread."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        self._thread = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llero-alerts", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                asyncio.run(self._post(alert))
            except (httpx.HTTPError, EgressRefused, OSError) as error:
                log.warning(
                    "alert:webhook_failed", alert=alert.kind.value, error=type(error).__name__
                )

    async def _post(self, alert: Alert) -> None:
        config, policy = self._config, self._policy
        if config is None or policy is None:
            return
        body = alert.body()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_body(body, config.secret, int(time.time())),
            EVENT_HEADER: alert.kind.value,
        }
        timeout = httpx.Timeout(config.timeout_seconds)
        async with guarded_client(policy, timeout=timeout) as client:
            response = await client.post(config.url, content=body, headers=headers)
        if response.is_success:
            log.info("alert:webhook_sent", alert=alert.kind.value, status=response.status_code)
        else:
            log.error("alert:webhook_failed", alert=alert.kind.value, status=response.status_code)


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
    """The alerts Llero raises, each turned into one message for the sender."""

    def __init__(self, sender: AlertSender, failures: FailureBurst) -> None:
        self.sender = sender
        self._failures = failures

    def sign_in_failed(self, now: datetime) -> None:
        count = self._failures.record(now)
        if count is not None:
            minutes = int(self._failures.window.total_seconds() // 60)
            self.sender.send(
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
        self.sender.send(
            Alert(
                AlertKind.REFRESH_TOKEN_REUSED,
                "a spent refresh token was presented again; its session was revoked",
            )
        )

    def agent_quarantined(self, agent_id: int, name: str) -> None:
        self.sender.send(
            Alert(
                AlertKind.AGENT_QUARANTINED,
                f"agent {name} (id {agent_id}) was quarantined",
                {"agent_id": agent_id, "name": name},
            )
        )

    def audit_chain_broken(self, sequence: int | None, reason: str) -> None:
        where = "the chain head" if sequence is None else f"record {sequence}"
        self.sender.send(
            Alert(
                AlertKind.AUDIT_CHAIN_BROKEN,
                f"the audit chain is broken at {where} ({reason})",
                {"sequence": sequence, "reason": reason},
            )
        )

    def close(self) -> None:
        self.sender.close()


ALERT_KEY = "alert-webhook.key"
MIN_SECRET_CHARS = 32


def security_alerts_from(settings: Settings) -> SecurityAlerts:
    """Build the alerts of one app or command; raise SettingsError for a bad webhook setting."""
    failures = FailureBurst(
        settings.alert_sign_in_failures, timedelta(seconds=settings.alert_sign_in_window_seconds)
    )
    if settings.alert_webhook_url is None:
        return SecurityAlerts(AlertSender(None), failures)
    config = WebhookConfig(
        url=settings.alert_webhook_url,
        secret=_webhook_secret(settings),
        loopback_endpoints=tuple(settings.alert_webhook_loopback),
    )
    try:
        sender = AlertSender(config)
    except (EgressRefused, ValueError) as error:
        message = error.message if isinstance(error, EgressRefused) else str(error)
        raise SettingsError(f"invalid setting LLERO_ALERT_WEBHOOK_URL: {message}") from None
    return SecurityAlerts(sender, failures)


def _webhook_secret(settings: Settings) -> Secret[bytes]:
    if settings.alert_webhook_secret is not None:
        text = settings.alert_webhook_secret.get_secret_value()
        if len(text) < MIN_SECRET_CHARS:
            raise SettingsError(
                f"invalid setting LLERO_ALERT_WEBHOOK_SECRET: must be at least "
                f"{MIN_SECRET_CHARS} characters, such as `openssl rand -hex 32`"
            )
        return Secret(text.encode("utf-8"))
    path = settings.keys_dir / ALERT_KEY
    if not path.exists():
        raise SettingsError(
            "invalid setting LLERO_ALERT_WEBHOOK_URL: it needs LLERO_ALERT_WEBHOOK_SECRET or "
            f"the key file {path} (mode 0600)"
        )
    secret = read_private_file(path).strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise SettingsError(f"key file {path} must hold at least {MIN_SECRET_CHARS} characters")
    return Secret(secret)
