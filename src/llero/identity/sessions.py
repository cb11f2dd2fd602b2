"""Sign-in sessions: refresh-token families with rotation, reuse detection and two time limits.

Each refresh exchanges the presented token for a new one in the same session and marks the old
one used. A used token presented again means that two parties hold the family (the token was
stolen, or a client kept a copy). The server cannot tell which holder is legitimate, so it revokes
the whole session, as RFC 9700 (OAuth 2.0 Security Best Current Practice, section 4.14.2)
recommends. A session also ends when it was idle longer than the idle limit or lived longer than
the absolute limit.

Signing out or revoking a session stops its refresh tokens at once, and its access tokens too:
each names its session in the ``sid`` claim, which the authenticator checks on every request.
Revoking all of a user's sessions also moves the user's not-before time.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import structlog
from sqlalchemy import Integer, Table, bindparam, select, update
from sqlalchemy.orm import Session

from llero.access.permissions import NotAuthenticated
from llero.audit.context import Actor, Origin, RequestContext, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.crypto import Secret
from llero.errors import NotFound
from llero.identity.context import IdentityContext
from llero.identity.models import (
    CLIENT_ADDRESS_MAX,
    USER_AGENT_MAX,
    AuthSession,
    RefreshToken,
    RevocationReason,
    User,
    UserStatus,
)
from llero.identity.opaque import issue_refresh_token, parse_refresh_token
from llero.identity.queries import changed_rows
from llero.identity.tokens import InvalidToken
from llero.storage.db import Database
from llero.storage.prepared import PreparedStatement
from llero.vault.fields import field_keys_of, sealed_field

log = structlog.get_logger("llero.identity")

# A sign-in writes these rows on the event loop (SQLite) or in a worker thread that shares the
# interpreter lock with it (PostgreSQL). Through the ORM's flushes they cost about 1 ms of CPU per
# sign-in, so they are compiled once and run straight through the driver.
_sessions = cast(Table, AuthSession.__table__)
_INSERT_SESSION = PreparedStatement(
    _sessions.insert().returning(_sessions.c.id),
    ["user_id", "created_at", "last_used_at", "idle_expires_at", "absolute_expires_at"],
)
_SEAL_CLIENT = PreparedStatement(
    update(_sessions).where(_sessions.c.id == bindparam("row_id", type_=Integer())),
    ["user_agent_envelope", "client_address_envelope"],
)
_INSERT_REFRESH_TOKEN = PreparedStatement(
    cast(Table, RefreshToken.__table__).insert(), ["session_id", "token_hash", "created_at"]
)
_USER_AGENT = sealed_field(AuthSession, "user_agent")
_CLIENT_ADDRESS = sealed_field(AuthSession, "client_address")


@dataclass(frozen=True)
class _Limits:
    """The expiry times of a session: the idle limit and the absolute limit."""

    idle_expires_at: datetime
    absolute_expires_at: datetime


@dataclass(frozen=True)
class ClientInfo:
    """The client of a sign-in as the session list shows it: user agent and client address."""

    user_agent: str
    address: str

    @classmethod
    def of(cls, user_agent: str | None, address: str | None) -> "ClientInfo":
        """Return the values cut to their column sizes, without characters a terminal obeys."""
        return cls(
            _printable(user_agent or "", USER_AGENT_MAX),
            _printable(address or "", CLIENT_ADDRESS_MAX),
        )


@dataclass(frozen=True)
class IssuedTokens:
    """The tokens of a new sign-in or a refresh. Both secrets go to the client once."""

    user_id: int
    session_id: int
    access_token: Secret[str]
    access_expires_at: datetime
    refresh_token: Secret[str]
    idle_expires_at: datetime
    absolute_expires_at: datetime
    # The user may do nothing but enroll a second factor until they do.
    mfa_enrollment_required: bool


def start_session(
    session: Session, context: IdentityContext, user: User, client: ClientInfo
) -> IssuedTokens:
    """Create a sign-in session for ``user`` with its first refresh token and an access token."""
    now = context.now()
    absolute_expires_at = now + context.limits.absolute
    limits = _Limits(min(now + context.limits.idle, absolute_expires_at), absolute_expires_at)
    connection = session.connection()
    ((session_id,),) = _INSERT_SESSION.execute(
        connection,
        {
            "user_id": user.id,
            "created_at": now,
            "last_used_at": now,
            "idle_expires_at": limits.idle_expires_at,
            "absolute_expires_at": limits.absolute_expires_at,
        },
    )
    # Both are sealed to the new row's id, which the insert has just returned.
    keys = field_keys_of(session)
    _SEAL_CLIENT.execute(
        connection,
        {
            "row_id": session_id,
            "user_agent_envelope": _USER_AGENT.seal(keys, session_id, client.user_agent),
            "client_address_envelope": _CLIENT_ADDRESS.seal(keys, session_id, client.address),
        },
    )
    log.info("session:started", user_id=user.id, session_id=session_id)
    return _issue_tokens(session, context, user, session_id=session_id, limits=limits, now=now)


def refresh_session(
    database: Database, context: IdentityContext, token_text: str, request: RequestContext
) -> IssuedTokens:
    """Exchange a refresh token for new tokens; raise NotAuthenticated when it is not accepted.

    Runs its own transaction, because a rejected reuse must still commit the revocation of the
    session, and its token:family_revoked audit event, before the error reaches the client.
    """
    try:
        token_hash = parse_refresh_token(token_text)
    except InvalidToken as error:
        raise NotAuthenticated(f"refresh_token_{error.reason}") from None

    with database.transaction() as session:
        outcome = _rotate(session, context, token_hash, request)
    if isinstance(outcome, str):
        log.info("session:refresh_rejected", reason=outcome)
        raise NotAuthenticated(outcome)
    return outcome


def sign_out(
    session: Session, context: IdentityContext, token_text: str, request: RequestContext
) -> None:
    """Revoke the session of a refresh token, whether or not the token was used already.

    An unknown or malformed token changes nothing and raises nothing, so signing out twice is
    harmless and the response does not tell a valid token from an invalid one. A sign-out is
    recorded as user:logout by the session's user.
    """
    try:
        token_hash = parse_refresh_token(token_text)
    except InvalidToken:
        return
    token = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    if token is None or token.auth_session.revoked_at is not None:
        return
    auth_session = token.auth_session
    _revoke(auth_session, context.now(), RevocationReason.SIGNED_OUT)
    record_as(
        session,
        Origin(Actor.user(auth_session.user_id), request),
        AuditEvent.USER_LOGOUT,
        Target.of("session", auth_session.id),
        {"user_id": auth_session.user_id},
    )


def list_sessions(
    session: Session, context: IdentityContext, user_id: int
) -> Sequence[AuthSession]:
    """Return the user's sessions that can still be refreshed, most recently used first."""
    now = context.now()
    query = (
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.idle_expires_at > now,
            AuthSession.absolute_expires_at > now,
        )
        .order_by(AuthSession.last_used_at.desc(), AuthSession.id.desc())
    )
    return session.scalars(query).all()


def revoke_own_session(
    session: Session, context: IdentityContext, origin: Origin, user_id: int, session_id: int
) -> None:
    """Revoke one of the user's own sessions; another user's session is reported as not found."""
    auth_session = session.get(AuthSession, session_id)
    if auth_session is None or auth_session.user_id != user_id or auth_session.revoked_at:
        raise NotFound(f"session {session_id} not found")
    _revoke(auth_session, context.now(), RevocationReason.REVOKED_BY_USER)
    _record_revoked(session, origin, auth_session)


def revoke_all_sessions(
    session: Session,
    context: IdentityContext,
    origin: Origin,
    user: User,
    reason: RevocationReason,
) -> int:
    """Revoke every session of ``user`` and end its access tokens; return how many were open.

    One session:revoked event on the user records it, even when no session was open, because
    the access tokens end all the same.
    """
    now = context.now()
    # Every access token issued before now fails the user's not-before check.
    user.not_before = now
    open_sessions = session.scalars(
        select(AuthSession).where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
    ).all()
    for auth_session in open_sessions:
        _revoke(auth_session, now, reason)
    record_as(
        session,
        origin,
        AuditEvent.SESSION_REVOKED,
        Target.of("user", user.id),
        {"reason": reason, "sessions_revoked": len(open_sessions)},
    )
    log.info("session:all_revoked", user_id=user.id, sessions=len(open_sessions), reason=reason)
    return len(open_sessions)


def _rotate(
    session: Session, context: IdentityContext, token_hash: str, request: RequestContext
) -> IssuedTokens | str:
    """Return new tokens, or the reason the refresh token is rejected."""
    now = context.now()
    # The claim is the first statement, so the transaction takes the write lock before it reads
    # anything: of two concurrent refreshes with one token, exactly one claims it.
    claimed = changed_rows(
        session,
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now),
    )
    token = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    if token is None:
        return "unknown_refresh_token"

    auth_session = token.auth_session
    if not claimed:
        return _reject_reuse(session, auth_session, now, request)
    if auth_session.revoked_at is not None:
        return "session_revoked"
    if now >= auth_session.idle_expires_at or now >= auth_session.absolute_expires_at:
        _revoke(auth_session, now, RevocationReason.EXPIRED)
        return "session_expired"
    if auth_session.user.status != UserStatus.ACTIVE:
        return "user_not_active"

    auth_session.last_used_at = now
    auth_session.idle_expires_at = min(now + context.limits.idle, auth_session.absolute_expires_at)
    limits = _Limits(auth_session.idle_expires_at, auth_session.absolute_expires_at)
    return _issue_tokens(
        session, context, auth_session.user, session_id=auth_session.id, limits=limits, now=now
    )


def _reject_reuse(
    session: Session, auth_session: AuthSession, now: datetime, request: RequestContext
) -> str:
    if auth_session.revoked_at is None:
        _revoke(auth_session, now, RevocationReason.REFRESH_TOKEN_REUSED)
        # Llero revokes the family itself: the holder of the reused token may be the thief.
        record_as(
            session,
            Origin(Actor.system(), request),
            AuditEvent.TOKEN_FAMILY_REVOKED,
            Target.of("session", auth_session.id),
            {"reason": RevocationReason.REFRESH_TOKEN_REUSED, "user_id": auth_session.user_id},
        )
        log.warning(
            "token:family_revoked",
            reason=RevocationReason.REFRESH_TOKEN_REUSED,
            user_id=auth_session.user_id,
            session_id=auth_session.id,
        )
    return "refresh_token_reused"


def _issue_tokens(
    session: Session,
    context: IdentityContext,
    user: User,
    *,
    session_id: int,
    limits: _Limits,
    now: datetime,
) -> IssuedTokens:
    refresh = issue_refresh_token()
    _INSERT_REFRESH_TOKEN.execute(
        session.connection(),
        {"session_id": session_id, "token_hash": refresh.token_hash, "created_at": now},
    )
    access = context.tokens.issue_access_token(
        subject=str(user.id), role=user.role, session_id=str(session_id)
    )
    return IssuedTokens(
        user_id=user.id,
        session_id=session_id,
        access_token=access.token,
        access_expires_at=access.expires_at,
        refresh_token=refresh.token,
        idle_expires_at=limits.idle_expires_at,
        absolute_expires_at=limits.absolute_expires_at,
        mfa_enrollment_required=context.mfa_required(user.role) and not user.mfa_enabled,
    )


def _revoke(auth_session: AuthSession, now: datetime, reason: RevocationReason) -> None:
    auth_session.revoked_at = now
    auth_session.revoked_reason = reason
    log.info(
        "session:revoked", user_id=auth_session.user_id, session_id=auth_session.id, reason=reason
    )


def _record_revoked(session: Session, origin: Origin, auth_session: AuthSession) -> None:
    record_as(
        session,
        origin,
        AuditEvent.SESSION_REVOKED,
        Target.of("session", auth_session.id),
        {"reason": auth_session.revoked_reason, "user_id": auth_session.user_id},
    )


def _printable(text: str, max_length: int) -> str:
    return "".join(character for character in text if character.isprintable())[:max_length]
