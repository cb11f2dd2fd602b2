"""Incident actions: revoke every credential at once, and switch the lockdown on and off.

Each function runs in the caller's transaction and records its audit event there, so the action
and its record are committed together or not at all.
"""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llero.audit.chain import format_time
from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.barracks.models import Agent, AgentStatus
from llero.barracks.quarantine import checked_reason
from llero.errors import Conflict
from llero.identity.models import ApiToken, AuthSession, OneTimeToken, RevocationReason
from llero.identity.queries import changed_rows
from llero.identity.signing_keys import load_signing_key_ring, rotate_signing_key
from llero.incident.models import LOCKDOWN_REASON_MAX, STATE_ROW_ID, SystemState
from llero.logs import get_logger

log = get_logger("llero.incident")


@dataclass(frozen=True)
class RevokedCredentials:
    """The credentials that ``revoke_all`` ended, counted by kind, and the global not-before."""

    sessions: int
    api_tokens: int
    one_time_codes: int
    not_before: datetime


@dataclass(frozen=True)
class LockdownState:
    enabled: bool
    reason: str
    changed_at: datetime | None


def read_state(session: Session) -> SystemState | None:
    """Return the state row, or None while no incident action has ever run."""
    return session.get(SystemState, STATE_ROW_ID)


def quarantined_agents(session: Session) -> list[tuple[int, str]]:
    """Return the id and name of every quarantined agent, by id."""
    rows = session.execute(
        select(Agent.id, Agent.name)
        .where(Agent.status == AgentStatus.QUARANTINED)
        .order_by(Agent.id)
    )
    return [(agent_id, name) for agent_id, name in rows]


def revoke_all(session: Session, origin: Origin, now: datetime) -> RevokedCredentials:
    """End every sign-in session, refresh token, API token and one-time code, and every access
    token issued before ``now``.

    Access tokens are self-contained, so the global not-before time is what ends them: the
    authenticator rejects any token issued before it. One-time codes are included because an
    unused enrollment code or sign-in challenge would otherwise open a new session afterwards.
    """
    state = _locked_state(session, now)
    state.tokens_not_before = now
    state.updated_at = now

    sessions = changed_rows(
        session,
        update(AuthSession)
        .where(AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=RevocationReason.INCIDENT),
    )
    api_tokens = changed_rows(
        session, update(ApiToken).where(ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    codes = changed_rows(
        session,
        update(OneTimeToken)
        .where(OneTimeToken.used_at.is_(None), OneTimeToken.expires_at > now)
        .values(used_at=now),
    )
    revoked = RevokedCredentials(sessions, api_tokens, codes, now)
    record_as(
        session,
        origin,
        AuditEvent.INCIDENT_REVOKE_ALL,
        # Keys named like "api_tokens" would be hashed as secrets, so plain words stand in.
        detail={
            "sessions": sessions,
            "personal_api": api_tokens,
            "one_time": codes,
            "not_before": format_time(now),
        },
    )
    # Each count is named with "count", so the log redaction keeps it (a key such as api_tokens
    # reads as a secret).
    log.warning(
        "incident:revoke_all",
        session_count=sessions,
        api_token_count=api_tokens,
        code_count=codes,
    )
    return revoked


def lockdown_state(session: Session) -> LockdownState:
    state = read_state(session)
    if state is None:
        return LockdownState(enabled=False, reason="", changed_at=None)
    return LockdownState(state.lockdown, state.lockdown_reason, state.updated_at)


def set_lockdown(
    session: Session, origin: Origin, *, enabled: bool, reason: str, now: datetime
) -> LockdownState:
    """Switch the lockdown on or off; a change is recorded as settings:changed, a no-op is not."""
    reason = checked_reason(reason, LOCKDOWN_REASON_MAX) if enabled else ""
    state = _locked_state(session, now)
    previous = state.lockdown
    if previous == enabled and state.lockdown_reason == reason:
        return LockdownState(state.lockdown, state.lockdown_reason, state.updated_at)

    state.lockdown = enabled
    state.lockdown_reason = reason
    state.updated_at = now
    record_as(
        session,
        origin,
        AuditEvent.SETTINGS_CHANGED,
        detail={"setting": "lockdown", "from": previous, "to": enabled, "reason": reason},
    )
    log.warning("incident:lockdown_changed", enabled=enabled)
    return LockdownState(enabled, reason, now)


def _locked_state(session: Session, now: datetime) -> SystemState:
    """Return the state row locked for this transaction, creating it on first use."""
    statement = select(SystemState).where(SystemState.id == STATE_ROW_ID).with_for_update()
    state = session.scalar(statement)
    if state is not None:
        return state
    state = SystemState(id=STATE_ROW_ID, lockdown=False, lockdown_reason="", updated_at=now)
    session.add(state)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("another incident action changed the system state; retry") from None
    return state


def rotate_signing(session: Session, origin: Origin, keys_dir: Path) -> tuple[str, str]:
    """Make a new access token signing key current; return its kid and the previous kid.

    The event is recorded before the key files change, so a chain that cannot be appended to
    stops the rotation. The files cannot be rolled back, so a commit that fails after the
    rotation leaves a rotated ring without its record, which the error then reports.
    """
    previous = load_signing_key_ring(keys_dir).current_kid
    record_as(
        session,
        origin,
        AuditEvent.SIGNING_KEY_ROTATED,
        Target.of("signing_key", previous),
        {"previous_kid": previous},
    )
    session.flush()
    kid = rotate_signing_key(keys_dir)
    log.warning("signing_key:rotated", kid=kid, previous_kid=previous)
    return kid, previous
