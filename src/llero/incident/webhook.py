"""The alert webhook: a signed JSON POST to LLERO_ALERT_WEBHOOK_URL.

The body is signed with HMAC-SHA256 over ``"{timestamp}." + body`` and sent as
``X-Llero-Signature: t=<unix seconds>,v1=<hex>``. A receiver recomputes the HMAC, compares in
constant time and rejects an old timestamp, so a captured alert cannot be replayed later.
"""

import asyncio
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx

from llero.config.keyfiles import read_private_file
from llero.config.settings import Settings
from llero.crypto import Secret, constant_time_equals
from llero.egress import EgressPolicy, EgressRefused, Endpoint, Target, check_url, guarded_client
from llero.errors import SettingsError
from llero.logs import get_logger

if TYPE_CHECKING:
    # Only for annotations: llero.incident.alerts imports this module to build its channels.
    from llero.incident.alerts import Alert

log = get_logger("llero.alerts")

SIGNATURE_HEADER = "X-Llero-Signature"
EVENT_HEADER = "X-Llero-Alert"
SIGNATURE_VERSION = "v1"
# The maximum age of a signed timestamp that a receiver accepts.
DEFAULT_TOLERANCE = timedelta(minutes=5)
DEFAULT_TIMEOUT_SECONDS = 5.0


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


class WebhookChannel:
    """Posts each alert to the webhook, signed, through the egress guard."""

    name = "webhook"

    def __init__(self, config: WebhookConfig) -> None:
        target = check_webhook_url(config.url, config.loopback_endpoints)
        self._config = config
        self._policy = EgressPolicy(
            allowed_hosts=frozenset({target.host}),
            allowed_endpoints=frozenset(Endpoint.parse(item) for item in config.loopback_endpoints),
        )

    @property
    def timeout_seconds(self) -> float:
        return self._config.timeout_seconds

    def deliver(self, alert: "Alert") -> None:
        """Post ``alert``, raising httpx.HTTPError, EgressRefused or OSError when that fails.

        A reply other than 2xx is logged as ``alert:webhook_failed`` without raising.
        """
        asyncio.run(self._post(alert))

    async def _post(self, alert: "Alert") -> None:
        config = self._config
        body = alert.body()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_body(body, config.secret, int(time.time())),
            EVENT_HEADER: alert.kind.value,
        }
        timeout = httpx.Timeout(config.timeout_seconds)
        async with guarded_client(self._policy, timeout=timeout) as client:
            response = await client.post(config.url, content=body, headers=headers)
        if response.is_success:
            log.info("alert:webhook_sent", alert=alert.kind.value, status=response.status_code)
        else:
            log.error("alert:webhook_failed", alert=alert.kind.value, status=response.status_code)


# --- Settings ----------------------------------------------------------------------------------

ALERT_KEY = "alert-webhook.key"
MIN_SECRET_CHARS = 32


def webhook_channel_from(settings: Settings) -> WebhookChannel | None:
    """Build the webhook channel, or None without LLERO_ALERT_WEBHOOK_URL.

    Raises SettingsError for a bad webhook setting.
    """
    if settings.alert_webhook_url is None:
        return None
    config = WebhookConfig(
        url=settings.alert_webhook_url,
        secret=_webhook_secret(settings),
        loopback_endpoints=tuple(settings.alert_webhook_loopback),
    )
    try:
        return WebhookChannel(config)
    except (EgressRefused, ValueError) as error:
        message = error.message if isinstance(error, EgressRefused) else str(error)
        raise SettingsError(f"invalid setting LLERO_ALERT_WEBHOOK_URL: {message}") from None


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
