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

from datetime import datetime

import structlog
from fastapi import Request
from sqlalchemy.orm import Session

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
        with self.database.reader() as session:
            users: dict[str, User | None] = {}

            def not_before_of(subject: str) -> datetime | None:
                users[subject] = _user_of_subject(session, subject)
                user = users[subject]
                return None if user is None else user.not_before

            try:
                claims = self.context.tokens.verify_access_token(
                    token, not_before_for=not_before_of
                )
            except InvalidToken as error:
                raise NotAuthenticated(f"access_token_{error.reason}") from None
            user = users.get(claims.subject)
            return self._principal(user, kind, None)

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
            principal = self._principal(found.user, TokenKind.API_TOKEN, granted_scopes(found))
            token_id, last_used_at = found.id, found.last_used_at

        if last_used_at is None or now - last_used_at >= LAST_USE_PRECISION:
            record_use(self.database, token_id, now)
        return principal

    def _principal(
        self, user: User | None, kind: TokenKind, scopes: frozenset[Permission] | None
    ) -> Principal:
        if user is None:
            raise NotAuthenticated("unknown_user")
        if user.status != UserStatus.ACTIVE:
            raise NotAuthenticated("user_not_active")
        permissions = permissions_of(user.role)
        if scopes is not None:
            permissions &= scopes
        return Principal(
            user_id=user.id,
            role=user.role,
            permissions=permissions,
            token_kind=kind,
            mfa_enrollment_required=self.context.mfa_required(user.role) and not user.mfa_enabled,
        )


def _bearer_token(value: str) -> str:
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise NotAuthenticated("not_a_bearer_token")
    return token


def _user_of_subject(session: Session, subject: str) -> User | None:
    # Llero writes the user id as the subject; anything else cannot name a user.
    if not (subject.isascii() and subject.isdigit()) or int(subject) > USER_ID_MAX:
        return None
    return session.get(User, int(subject))


def _check_csrf(request: Request, principal: Principal) -> None:
    presented = request.headers.get(CSRF_HEADER)
    expected = request.cookies.get(CSRF_COOKIE)
    if not presented or not expected or not constant_time_equals(presented, expected):
        log.info("auth:denied", reason="csrf_token_mismatch", user_id=principal.user_id)
        raise CsrfCheckFailed
