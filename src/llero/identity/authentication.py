"""Authenticate a request from its bearer token or its session cookie.

Three credentials are accepted, each checked against the database on every request, so a disabled
user or a revoked token stops working at once:

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

from dataclasses import dataclass
from datetime import datetime

import structlog
from fastapi import Request
from sqlalchemy import bindparam, select

from llero.access.permissions import (
    NotAuthenticated,
    Permission,
    PermissionDenied,
    Principal,
    TokenKind,
)
from llero.access.roles import permissions_of
from llero.crypto import constant_time_equals
from llero.identity.api_tokens import (
    LAST_USE_PRECISION,
    find_usable_api_token,
    granted_scopes,
    record_use,
)
from llero.identity.context import IdentityContext
from llero.identity.models import User, UserStatus
from llero.identity.opaque import PREFIXES, OpaqueKind, parse_personal_api_token
from llero.identity.tokens import InvalidToken
from llero.storage.db import Database

log = structlog.get_logger("llero.identity")

SESSION_COOKIE = "__Host-llero_session"
CSRF_COOKIE = "__Host-llero_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_TOKEN_PREFIX = PREFIXES[OpaqueKind.PERSONAL_API]
# User ids are 32-bit integers in every supported database.
USER_ID_MAX = 2**31 - 1


@dataclass(frozen=True)
class AccountState:
    """The columns of a user that decide whether a credential of theirs is accepted."""

    id: int
    role: str
    status: str
    not_before: datetime | None
    mfa_enabled: bool

    @classmethod
    def of(cls, user: User) -> "AccountState":
        return cls(user.id, user.role, user.status, user.not_before, user.mfa_enabled)


# This runs on every request, so it reads five columns with one prepared statement instead of
# loading the whole user through the ORM.
# NOTE: the signature check and this read cost about 0.5 ms per request. With them,
# benchmarks/serve.py measured GET /api/tools at 344 requests/s against 548 without sign-in
# (one run on a shared 2-core x86-64 machine). Caching verified token texts would save the
# signature check; the read is what lets a disabled user's next request fail.
ACCOUNT_QUERY = select(
    User.id,
    User.role,
    User.status,
    User.not_before,
    User.totp_seed_envelope.is_not(None).label("mfa_enabled"),
).where(User.id == bindparam("user_id"))


class CsrfCheckFailed(PermissionDenied):
    """A cookie-authenticated request with an unsafe method lacks a matching CSRF token."""

    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__(f"the {CSRF_HEADER} header is missing or does not match")


class RequestAuthenticator:
    """The authenticator ``requires`` calls; one per app."""

    def __init__(self, database: Database, context: IdentityContext) -> None:
        self.database = database
        self.context = context

    def authenticate(self, request: Request) -> Principal:
        """Return the principal of ``request``; raise NotAuthenticated or CsrfCheckFailed."""
        try:
            return self._authenticate(request)
        except NotAuthenticated as error:
            log.info("auth:rejected", reason=error.reason, method=request.method)
            raise

    def _authenticate(self, request: Request) -> Principal:
        authorization = request.headers.getlist("authorization")
        if len(authorization) > 1:
            raise NotAuthenticated("several_authorization_headers")
        if authorization:
            token = _bearer_token(authorization[0])
            if token.startswith(API_TOKEN_PREFIX):
                return self._from_api_token(token)
            return self._from_access_token(token, TokenKind.ACCESS_TOKEN)

        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is None:
            raise NotAuthenticated("no_credentials")
        principal = self._from_access_token(cookie, TokenKind.SESSION_COOKIE)
        if request.method not in SAFE_METHODS:
            _check_csrf(request, principal)
        return principal

    def _from_access_token(self, token: str, kind: TokenKind) -> Principal:
        accounts: dict[str, AccountState | None] = {}

        def not_before_of(subject: str) -> datetime | None:
            accounts[subject] = self._account_of_subject(subject)
            account = accounts[subject]
            return None if account is None else account.not_before

        try:
            claims = self.context.tokens.verify_access_token(token, not_before_for=not_before_of)
        except InvalidToken as error:
            raise NotAuthenticated(f"access_token_{error.reason}") from None
        return self._principal(accounts.get(claims.subject), kind, None)

    def _account_of_subject(self, subject: str) -> AccountState | None:
        # Llero writes the user id as the subject; anything else cannot name a user.
        if not (subject.isascii() and subject.isdigit()) or int(subject) > USER_ID_MAX:
            return None
        with self.database.engine.connect() as connection:
            row = connection.execute(ACCOUNT_QUERY, {"user_id": int(subject)}).first()
        return None if row is None else AccountState(*row)

    def _from_api_token(self, token: str) -> Principal:
        try:
            token_hash = parse_personal_api_token(token)
        except InvalidToken as error:
            raise NotAuthenticated(f"api_token_{error.reason}") from None

        now = self.context.now()
        with self.database.reader() as session:
            found = find_usable_api_token(session, token_hash, now)
            if isinstance(found, str):
                raise NotAuthenticated(found)
            principal = self._principal(
                AccountState.of(found.user), TokenKind.API_TOKEN, granted_scopes(found)
            )
            token_id, last_used_at = found.id, found.last_used_at

        if last_used_at is None or now - last_used_at >= LAST_USE_PRECISION:
            record_use(self.database, token_id, now)
        return principal

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
        )


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
