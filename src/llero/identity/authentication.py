"""Authenticate a request from its bearer token or its session cookie.

Three credentials are accepted, each checked against the database on every request, so a disabled
user, a revoked token or a system-wide revocation (`llero incident revoke-all`) stops it at once:

- ``Authorization: Bearer <access token>``: a JWT from sign-in or refresh.
- ``Authorization: Bearer llero_pat_...``: a personal API token, limited to its scopes.
- the ``__Host-llero_session`` cookie holding an access token, for the browser. A cookie is sent
  by the browser on its own, so a request with an unsafe method must also repeat the value of
  the ``__Host-llero_csrf`` cookie in an ``X-CSRF-Token`` header (the double-submit pattern).
  Another site cannot read that cookie, and the ``__Host-`` prefix stops a subdomain from
  planting one.

An Authorization header wins over the cookie. The client learns only that authentication failed;
the reason goes to the log.
"""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from fastapi import Request
from sqlalchemy import and_, bindparam, select

from llero.access.permissions import (
    NotAuthenticated,
    Permission,
    PermissionDenied,
    Principal,
    TokenKind,
)
from llero.access.roles import Role, permissions_of
from llero.crypto import constant_time_equals
from llero.identity.api_tokens import (
    LAST_USE_PRECISION,
    record_use,
    scopes_granted,
    unusable_reason,
)
from llero.identity.context import IdentityContext
from llero.identity.models import ApiToken, AuthSession, User, UserStatus
from llero.identity.opaque import PREFIXES, OpaqueKind, parse_personal_api_token
from llero.identity.tokens import (
    AccessClaims,
    AccessTokenService,
    InvalidToken,
    check_not_revoked,
)
from llero.incident.models import STATE_ROW_ID, SystemState
from llero.storage.db import Database
from llero.storage.prepared import PreparedRead
from llero.storage.threads import run_database_work

log = structlog.get_logger("llero.identity")

SESSION_COOKIE = "__Host-llero_session"
CSRF_COOKIE = "__Host-llero_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_TOKEN_PREFIX = PREFIXES[OpaqueKind.PERSONAL_API]
# User and session ids are 32-bit integers in every supported database.
USER_ID_MAX = 2**31 - 1


@dataclass(frozen=True)
class AccountState:
    """The columns of a user, and of the system state, that decide whether a credential of
    theirs is accepted and what it may do."""

    id: int
    role: str
    status: str
    not_before: datetime | None
    mfa_enabled: bool
    # Set by `llero incident revoke-all`: no access token issued before it is accepted.
    system_not_before: datetime | None = None
    lockdown: bool | None = None

    @classmethod
    def of(cls, user: User, system: tuple[datetime | None, bool | None]) -> "AccountState":
        return cls(user.id, user.role, user.status, user.not_before, user.mfa_enabled, *system)

    @property
    def revoked_before(self) -> datetime | None:
        """Return the later of the user's and the system's not-before times."""
        times = [time for time in (self.not_before, self.system_not_before) if time is not None]
        return max(times, default=None)


SYSTEM_STATE_QUERY = select(SystemState.tokens_not_before, SystemState.lockdown).where(
    SystemState.id == STATE_ROW_ID
)

# This runs on every request, so it reads the user, the token's session and the system state
# with one prepared statement instead of loading them through the ORM. session_user_id is NULL
# when the session does not exist or belongs to another user.
ACCOUNT_QUERY = (
    select(
        User.id,
        User.role,
        User.status,
        User.not_before,
        User.totp_seed_envelope.is_not(None).label("mfa_enabled"),
        AuthSession.user_id.label("session_user_id"),
        AuthSession.revoked_at.label("session_revoked_at"),
        SYSTEM_STATE_QUERY.with_only_columns(SystemState.tokens_not_before)
        .scalar_subquery()
        .label("system_not_before"),
        SYSTEM_STATE_QUERY.with_only_columns(SystemState.lockdown)
        .scalar_subquery()
        .label("lockdown"),
    )
    .outerjoin(
        AuthSession,
        and_(AuthSession.id == bindparam("session_id"), AuthSession.user_id == User.id),
    )
    .where(User.id == bindparam("user_id"))
)

# The same for a personal API token: the token, its owner and the system state in one read.
API_TOKEN_QUERY = (
    select(
        ApiToken.id,
        ApiToken.revoked_at,
        ApiToken.expires_at,
        ApiToken.last_used_at,
        ApiToken.scopes,
        User.id,
        User.role,
        User.status,
        User.not_before,
        User.totp_seed_envelope.is_not(None).label("mfa_enabled"),
        SYSTEM_STATE_QUERY.with_only_columns(SystemState.tokens_not_before)
        .scalar_subquery()
        .label("system_not_before"),
        SYSTEM_STATE_QUERY.with_only_columns(SystemState.lockdown)
        .scalar_subquery()
        .label("lockdown"),
    )
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)

# Verified access tokens, so a token's Ed25519 signature is checked once, not on every request.
# An entry takes about 1 KiB (an estimate), so the cache stays under about 4 MiB.
TOKEN_CACHE_SIZE = 4096


class VerifiedTokenCache:
    """A bounded LRU of verified access tokens, keyed by the SHA-256 of their exact text.

    An entry is dropped once its token expires, so expiry is enforced as if the token were
    verified again. Only what the signature proves is cached: revocation (the user's status and
    not-before time, and the session) is read from the database on every request.
    The key is a digest, so the cache keeps no bearer token in memory.
    """

    def __init__(self, tokens: AccessTokenService, max_entries: int = TOKEN_CACHE_SIZE) -> None:
        self._tokens = tokens
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, AccessClaims] = OrderedDict()
        # authenticate runs in a thread pool, so several threads share the cache.
        self._lock = threading.Lock()

    def verified(self, token: str, now: datetime) -> AccessClaims:
        """Return the claims of ``token``, verifying it unless a valid entry exists.

        Raises InvalidToken or a subclass as ``verify_access_token`` does.
        """
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            claims = self._entries.get(key)
            if claims is not None:
                if now < self._tokens.usable_until(claims):
                    self._entries.move_to_end(key)
                    return claims
                del self._entries[key]

        claims = self._tokens.verify_access_token(token)
        with self._lock:
            self._entries[key] = claims
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return claims

    def __len__(self) -> int:
        return len(self._entries)


class CsrfCheckFailed(PermissionDenied):
    """A cookie-authenticated request with an unsafe method lacks a matching CSRF token."""

    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__(f"the {CSRF_HEADER} header is missing or does not match")


# An API token's id and the time to record as its last use.
_Use = tuple[int, datetime]


class RequestAuthenticator:
    """The authenticator ``requires`` calls; one per app."""

    def __init__(self, database: Database, context: IdentityContext) -> None:
        self.database = database
        self.context = context
        self.tokens = VerifiedTokenCache(context.tokens)
        self._account_read = PreparedRead(database, ACCOUNT_QUERY)
        self._api_token_read = PreparedRead(database, API_TOKEN_QUERY)
        # A SQLite read in WAL mode waits for no writer and took 13 us in one measurement, less
        # than a hand-off to a worker thread and back. A PostgreSQL read is a network round trip.
        self._reads_on_loop = database.engine.dialect.name == "sqlite"

    def authenticate(self, request: Request) -> Principal:
        """Return the principal of ``request``; raise NotAuthenticated or CsrfCheckFailed.

        Reads and may write the database, so async code calls ``principal_of`` instead.
        """
        principal, use = self._checked(request)
        if use is not None:
            record_use(self.database, *use)
        return principal

    async def principal_of(self, request: Request) -> Principal:
        """Return the principal of ``request`` without blocking the event loop for long.

        On SQLite the account is read on the loop itself. A write (an API token's last use,
        once a minute) and every PostgreSQL read run on a database worker thread.
        """
        if not self._reads_on_loop:
            return await run_database_work(self.authenticate, request)
        principal, use = self._checked(request)
        if use is not None:
            await run_database_work(record_use, self.database, *use)
        return principal

    def _checked(self, request: Request) -> tuple[Principal, _Use | None]:
        try:
            return self._authenticate(request)
        except NotAuthenticated as error:
            log.info("auth:rejected", reason=error.reason, method=request.method)
            raise

    def _authenticate(self, request: Request) -> tuple[Principal, _Use | None]:
        authorization = request.headers.getlist("authorization")
        if len(authorization) > 1:
            raise NotAuthenticated("several_authorization_headers")
        if authorization:
            token = _bearer_token(authorization[0])
            if token.startswith(API_TOKEN_PREFIX):
                return self._from_api_token(token)
            return self._from_access_token(token, TokenKind.ACCESS_TOKEN), None

        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is None:
            raise NotAuthenticated("no_credentials")
        principal = self._from_access_token(cookie, TokenKind.SESSION_COOKIE)
        if request.method not in SAFE_METHODS:
            _check_csrf(request, principal)
        return principal, None

    def _from_access_token(self, token: str, kind: TokenKind) -> Principal:
        try:
            claims = self.tokens.verified(token, self.context.now())
        except InvalidToken as error:
            raise NotAuthenticated(f"access_token_{error.reason}") from None
        if claims.session_id is None:
            # Sign-in writes sid into every token; one without it cannot be revoked by session.
            raise NotAuthenticated("access_token_without_session")

        row = self._account_row(claims)
        if row is None:
            raise NotAuthenticated("unknown_user")
        (
            user_id,
            role,
            status,
            not_before,
            mfa_enabled,
            session_user_id,
            session_revoked_at,
            system_not_before,
            lockdown,
        ) = row
        account = AccountState(
            user_id, role, status, not_before, mfa_enabled, system_not_before, lockdown
        )
        try:
            check_not_revoked(claims, account.revoked_before)
        except InvalidToken as error:
            raise NotAuthenticated(f"access_token_{error.reason}") from None
        if session_user_id is None:
            raise NotAuthenticated("unknown_session")
        if session_revoked_at is not None:
            raise NotAuthenticated("session_revoked")
        return self._principal(account, kind, None)

    def _account_row(self, claims: AccessClaims) -> tuple[Any, ...] | None:
        """Return the account's row joined with the token's session, or None for a bad id."""
        # Llero writes integer ids as subject and sid; anything else cannot name a row.
        user_id = _row_id(claims.subject)
        session_id = _row_id(claims.session_id or "")
        if user_id is None or session_id is None:
            return None
        return self._account_read.first({"user_id": user_id, "session_id": session_id})

    def _from_api_token(self, token: str) -> tuple[Principal, _Use | None]:
        try:
            token_hash = parse_personal_api_token(token)
        except InvalidToken as error:
            raise NotAuthenticated(f"api_token_{error.reason}") from None

        now = self.context.now()
        row = self._api_token_read.first({"token_hash": token_hash})
        if row is None:
            raise NotAuthenticated("unknown_api_token")
        (
            token_id,
            revoked_at,
            expires_at,
            last_used_at,
            scopes,
            user_id,
            role,
            status,
            not_before,
            mfa_enabled,
            system_not_before,
            lockdown,
        ) = row
        problem = unusable_reason(revoked_at, expires_at, now)
        if problem is not None:
            raise NotAuthenticated(problem)
        account = AccountState(
            user_id, role, status, not_before, mfa_enabled, system_not_before, lockdown
        )
        principal = self._principal(account, TokenKind.API_TOKEN, scopes_granted(scopes, role))

        if last_used_at is None or now - last_used_at >= LAST_USE_PRECISION:
            return principal, (token_id, now)
        return principal, None

    def _principal(
        self, account: AccountState | None, kind: TokenKind, scopes: frozenset[Permission] | None
    ) -> Principal:
        if account is None:
            raise NotAuthenticated("unknown_user")
        if account.status != UserStatus.ACTIVE:
            raise NotAuthenticated("user_not_active")
        permissions = permissions_of(account.role)
        if scopes is not None:
            permissions &= scopes
        return Principal(
            user_id=account.id,
            role=account.role,
            permissions=permissions,
            token_kind=kind,
            mfa_enrollment_required=(
                self.context.mfa_required(account.role) and not account.mfa_enabled
            ),
            read_only=bool(account.lockdown) and account.role != Role.ADMIN,
        )


def _row_id(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or int(text) > USER_ID_MAX:
        return None
    return int(text)


def _bearer_token(value: str) -> str:
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise NotAuthenticated("not_a_bearer_token")
    return token


def _check_csrf(request: Request, principal: Principal) -> None:
    presented = request.headers.get(CSRF_HEADER)
    expected = request.cookies.get(CSRF_COOKIE)
    if not presented or not expected or not constant_time_equals(presented, expected):
        log.info("auth:denied", reason="csrf_token_mismatch", user_id=principal.user_id)
        raise CsrfCheckFailed
