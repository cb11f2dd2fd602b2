"""Rate limits per client address, per user, per API token and per agent, with the `limits` library.

Every request is counted against its client address (as ``llero.web.clients`` resolves it
behind trusted proxies) before anyone is authenticated, so a flood of bad credentials is
stopped before it reaches the database. Once the caller is known, the request is also counted
against the user, or for an API token against that token alone. The limits depend on the route
group of the request:

- ``auth``: the routes that take a credential or send mail (sign-in and its second step,
  refresh, enrollment, sign-out, TOTP enrollment, password reset, sign-up), limited per
  address by LLERO_RATE_LIMIT_AUTH, and TOTP enrollment per user or token too.
- ``export``, ``read`` and ``write``: exports, then every other route by HTTP method, each
  limited per user and per API token. Per address they share LLERO_RATE_LIMIT_ADDRESS, which
  is higher, because many users can sit behind one address.
- ``agent``: not a route group. ``RateLimiter.check_agent`` counts the actions of one agent.

Counters live in memory by default, which suits one process. Several processes that share the
load need ``LLERO_RATE_LIMIT_STORAGE=redis://...``, so they share the counters. The moving window
of `limits` keeps the time of each counted request up to the limit, so a limit holds over any
window-long span, also across clock minute boundaries, at the cost of memory per request
counted.

When the storage fails (Redis is down), requests pass and the failure is logged at most once a
minute, because a limiter that fails closed would turn a Redis outage into an outage of Llero.
Sign-in keeps its own per-account throttle in the database either way.
"""

import hashlib
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import structlog
from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool

from llero.access.permissions import Permission, Principal, TokenKind
from llero.audit.context import Actor, Origin
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.config.settings import Settings
from llero.errors import RateLimited, seconds_text
from llero.web.clients import audit_context, client_address

log = structlog.get_logger("llero.ratelimit")

# How long Redis may take to respond before the request passes uncounted.
REDIS_TIMEOUT_SECONDS = 0.5
STORAGE_FAILURE_LOG_INTERVAL = 60.0
# At most one audit event is written per exhausted counter and window. Only this many counters
# are remembered, so a flood from many addresses cannot grow the table without bound.
MAX_REPORTED_COUNTERS = 10_000
AUDIT_ACTOR = "rate_limiter"


class RouteGroup(StrEnum):
    AGENT = "agent"
    AUTH = "auth"
    EXPORT = "export"
    READ = "read"
    WRITE = "write"


CREDENTIAL_PERMISSIONS = frozenset(
    {
        Permission.AUTH_ENROLL,
        Permission.AUTH_MFA_ENROLL,
        Permission.AUTH_PASSWORD_RESET,
        Permission.AUTH_REFRESH,
        Permission.AUTH_SIGNIN,
        Permission.AUTH_SIGNOUT,
        Permission.AUTH_SIGNUP,
    }
)
EXPORT_PERMISSIONS = frozenset({Permission.AUDIT_EXPORT, Permission.TOOL_EXPORT})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def route_group(permission: Permission, method: str) -> RouteGroup:
    if permission in CREDENTIAL_PERMISSIONS:
        return RouteGroup.AUTH
    if permission in EXPORT_PERMISSIONS:
        return RouteGroup.EXPORT
    return RouteGroup.READ if method in READ_METHODS else RouteGroup.WRITE


@dataclass(frozen=True)
class Counter:
    """One counted identity: ``scope`` is address, user, token or agent."""

    group: RouteGroup
    scope: str
    identity: str


class LimitExceeded(RateLimited):
    """RateLimited that names the counter and the limit, for the log and the audit trail.

    The client's message names the limit and its setting, so a script's author or the admin can
    tell which one to wait for or raise. It leaves out the counted identity.
    """

    def __init__(self, counter: Counter, limit: str, retry_after: int) -> None:
        super().__init__(retry_after)
        self.counter = counter
        self.limit = limit
        counted, setting = _counted_and_setting(counter)
        self.message = (
            f"too many requests: {counted} reached {setting} ({limit}); "
            f"retry after {seconds_text(retry_after)}"
        )


def _counted_and_setting(counter: Counter) -> tuple[str, str]:
    """Return what ``counter`` counts, in words, and the setting of its limit."""
    if counter.scope == "agent":
        return "the model calls of this agent", "LLERO_RATE_LIMIT_AGENT"
    if counter.scope == "address" and counter.group is not RouteGroup.AUTH:
        return "the requests from this client address", "LLERO_RATE_LIMIT_ADDRESS"
    counted = {
        "address": "the sign-in and token requests from this client address",
        "token": f"the {counter.group.value} requests of this API token",
        "user": f"the {counter.group.value} requests of this user",
    }[counter.scope]
    return counted, f"LLERO_RATE_LIMIT_{counter.group.value.upper()}"


@dataclass(frozen=True)
class RateLimitPolicy:
    per_address: tuple[RateLimitItem, ...]
    groups: Mapping[RouteGroup, tuple[RateLimitItem, ...]]

    @classmethod
    def from_settings(cls, settings: Settings) -> "RateLimitPolicy":
        return cls(
            per_address=tuple(parse_many(settings.rate_limit_address)),
            groups={
                RouteGroup.AGENT: tuple(parse_many(settings.rate_limit_agent)),
                RouteGroup.AUTH: tuple(parse_many(settings.rate_limit_auth)),
                RouteGroup.EXPORT: tuple(parse_many(settings.rate_limit_export)),
                RouteGroup.READ: tuple(parse_many(settings.rate_limit_read)),
                RouteGroup.WRITE: tuple(parse_many(settings.rate_limit_write)),
            },
        )


class RateLimiter:
    """Counts requests and agent actions, and raises LimitExceeded when a limit is used up."""

    def __init__(self, storage_uri: str, policy: RateLimitPolicy, *, key_prefix: str) -> None:
        options: dict[str, float | str | bool] = {"wrap_exceptions": True}
        if storage_uri.startswith(("redis://", "rediss://")):
            options["socket_timeout"] = REDIS_TIMEOUT_SECONDS
            options["socket_connect_timeout"] = REDIS_TIMEOUT_SECONDS
        self.storage = storage_from_string(storage_uri, **options)
        self.in_memory = storage_uri.startswith("memory://")
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.policy = policy
        self.key_prefix = key_prefix
        self._lock = threading.Lock()
        self._last_failure_log = -math.inf
        self._failures_since_log = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> "RateLimiter":
        return cls(
            settings.rate_limit_storage.get_secret_value(),
            RateLimitPolicy.from_settings(settings),
            key_prefix=settings.rate_limit_key_prefix,
        )

    def hit(self, counter: Counter, items: tuple[RateLimitItem, ...]) -> None:
        """Count one request of ``counter`` against each limit in ``items``.

        Raises LimitExceeded at the first limit that is used up. The limits before it have
        counted the request already, which errs on the strict side.
        """
        keys = (self.key_prefix, counter.group.value, counter.scope, counter.identity)
        for item in items:
            try:
                if self.strategy.hit(item, *keys):
                    continue
                reset_time = self.strategy.get_window_stats(item, *keys).reset_time
            except StorageError as error:
                self._log_storage_failure(error)
                return
            retry_after = max(1, math.ceil(reset_time - time.time()))
            raise LimitExceeded(counter, str(item), retry_after)

    def check_agent(self, agent_id: int | str) -> None:
        """Count one action of an agent against LLERO_RATE_LIMIT_AGENT; raise LimitExceeded.

        For the Command Center, before each step an agent takes on its own, so a looping agent
        is slowed down like a flooding client. It may block on Redis, so async code calls it in
        a worker thread.
        """
        counter = Counter(RouteGroup.AGENT, "agent", str(agent_id))
        self.hit(counter, self.policy.groups[RouteGroup.AGENT])

    def _log_storage_failure(self, error: StorageError) -> None:
        with self._lock:
            self._failures_since_log += 1
            now = time.monotonic()
            if now - self._last_failure_log < STORAGE_FAILURE_LOG_INTERVAL:
                return
            failures, self._failures_since_log = self._failures_since_log, 0
            self._last_failure_log = now
        log.error(
            "rate_limit:storage_failed",
            error=type(error.storage_error).__name__,
            failures=failures,
            consequence="requests pass uncounted until the storage answers",
        )


def token_fingerprint(request: Request) -> str | None:
    """Return the counter identity of the bearer credential of ``request``.

    Counter keys are stored in Redis, so they hold a SHA-256 of the token, from which a token of
    256 random bits cannot be recovered.
    """
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return hashlib.sha256(credential.strip().encode()).hexdigest()[:32]


class RequestLimits:
    """The hooks that ``llero.access.permissions.requires`` calls around authentication.

    An exhausted ``auth`` counter is logged and also recorded as a rate_limit:exceeded audit
    event, once per counter and window, because it is what credential stuffing looks like.
    Other exhausted counters are only logged.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self._reported: dict[Counter, float] = {}
        self._lock = threading.Lock()

    async def before_authentication(self, request: Request, permission: Permission) -> None:
        group = route_group(permission, request.method)
        policy = self.limiter.policy
        items = policy.groups[group] if group is RouteGroup.AUTH else policy.per_address
        address = client_address(request) or "unknown"
        await self._count(request, Counter(group, "address", address), items)

    async def after_authentication(
        self, request: Request, permission: Permission, principal: Principal
    ) -> None:
        group = route_group(permission, request.method)
        counter = Counter(group, "user", str(principal.user_id))
        fingerprint = token_fingerprint(request)
        if principal.token_kind is TokenKind.API_TOKEN and fingerprint is not None:
            # A script's token has a budget of its own, so it cannot starve its owner's
            # session; the per-address limit still caps them together.
            counter = Counter(group, "token", fingerprint)
        await self._count(
            request, counter, self.limiter.policy.groups[group], user_id=principal.user_id
        )

    async def _count(
        self,
        request: Request,
        counter: Counter,
        items: tuple[RateLimitItem, ...],
        *,
        user_id: int | None = None,
    ) -> None:
        """Count ``request`` with ``counter``; ``user_id`` is its signed-in user, for the log."""
        try:
            if self.limiter.in_memory:
                self.limiter.hit(counter, items)
            else:
                # A round trip to Redis would block the event loop.
                await run_in_threadpool(self.limiter.hit, counter, items)
        except LimitExceeded as exceeded:
            log.warning(
                "rate_limit:exceeded",
                group=counter.group.value,
                scope=counter.scope,
                limit=exceeded.limit,
                retry_after=exceeded.retry_after,
                client_address=client_address(request),
                user_id=user_id,
            )
            if counter.group is RouteGroup.AUTH and self._first_report(exceeded):
                await run_in_threadpool(self._audit, request, exceeded)
            raise

    def _first_report(self, exceeded: LimitExceeded) -> bool:
        now = time.time()
        with self._lock:
            if self._reported.get(exceeded.counter, 0.0) > now:
                return False
            if len(self._reported) >= MAX_REPORTED_COUNTERS:
                self._reported = {key: end for key, end in self._reported.items() if end > now}
                if len(self._reported) >= MAX_REPORTED_COUNTERS:
                    return False
            self._reported[exceeded.counter] = now + exceeded.retry_after
            return True

    def _audit(self, request: Request, exceeded: LimitExceeded) -> None:
        origin = Origin(Actor.system(AUDIT_ACTOR), audit_context(request))
        detail = {
            "group": exceeded.counter.group.value,
            "scope": exceeded.counter.scope,
            "limit": exceeded.limit,
            "permission": str(getattr(request.state, "permission", "")),
        }
        try:
            with request.app.state.database.transaction() as session:
                record_as(session, origin, AuditEvent.RATE_LIMIT_EXCEEDED, None, detail)
        except Exception:
            # The client gets its 429 whatever fails here: the request is refused either way.
            log.exception("rate_limit:audit_failed")
