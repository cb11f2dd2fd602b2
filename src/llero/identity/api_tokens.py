"""Personal API tokens: long-lived llero_pat_ tokens that act for their owner with fewer rights.

A token's scopes are fixed when it is made and must be permissions its owner's role grants and
may delegate. At each use the token is granted only the scopes that the owner's current role
still grants, so a demoted owner's tokens shrink with the role. The plaintext is returned once;
only its hash is stored.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from llero.access.permissions import Permission
from llero.access.roles import delegable_permissions, permissions_of
from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.crypto import Secret
from llero.errors import InvalidInput, NotFound, Violation
from llero.identity.models import ApiToken, RevocationReason, User
from llero.identity.opaque import PREFIXES, OpaqueKind, issue_personal_api_token
from llero.identity.queries import changed_rows
from llero.storage.db import Database

log = structlog.get_logger("llero.identity")

MAX_LIFETIME_DAYS = 365
DEFAULT_LIFETIME_DAYS = 90
# The shown prefix: "llero_pat_" and the first four random characters.
PREFIX_HINT_LENGTH = len(PREFIXES[OpaqueKind.PERSONAL_API]) + 4
# Recording every use would turn each API call into a write; a minute is precise enough to
# see which tokens are in use.
LAST_USE_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class CreatedApiToken:
    record: ApiToken
    token: Secret[str]


def create_api_token(
    session: Session,
    origin: Origin,
    owner: User,
    *,
    name: str,
    scopes: Sequence[Permission],
    lifetime_days: int,
    now: datetime,
) -> CreatedApiToken:
    """Create a token for ``owner``; raise InvalidInput naming a scope the owner cannot delegate."""
    _check_name(name)
    granted = _checked_scopes(owner.role, scopes)
    if not 1 <= lifetime_days <= MAX_LIFETIME_DAYS:
        raise InvalidInput(
            f"expires_in_days must be between 1 and {MAX_LIFETIME_DAYS}",
            details=[Violation("expires_in_days", f"must be between 1 and {MAX_LIFETIME_DAYS}")],
        )

    issued = issue_personal_api_token()
    record = ApiToken(
        user_id=owner.id,
        name=name,
        token_hash=issued.token_hash,
        prefix=issued.token.reveal()[:PREFIX_HINT_LENGTH],
        scopes=sorted(granted),
        created_at=now,
        expires_at=now + timedelta(days=lifetime_days),
    )
    session.add(record)
    session.flush()
    record_as(
        session,
        origin,
        AuditEvent.API_TOKEN_CREATED,
        Target.of("api_token", record.id),
        {"expires_at": record.expires_at.isoformat(), "scopes": record.scopes},
    )
    log.info("api_token:created", user_id=owner.id, token_id=record.id, scopes=record.scopes)
    return CreatedApiToken(record, issued.token)


def list_api_tokens(session: Session, owner_id: int) -> Sequence[ApiToken]:
    """Return the owner's tokens, revoked and expired ones included, newest first."""
    query = (
        select(ApiToken)
        .where(ApiToken.user_id == owner_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    return session.scalars(query).all()


def revoke_api_token(
    session: Session, origin: Origin, owner_id: int, token_id: int, now: datetime
) -> None:
    """Revoke one of the owner's tokens; another user's token is reported as not found."""
    record = session.get(ApiToken, token_id)
    if record is None or record.user_id != owner_id:
        raise NotFound(f"API token {token_id} not found")
    if record.revoked_at is None:
        record.revoked_at = now
        record_as(session, origin, AuditEvent.API_TOKEN_REVOKED, Target.of("api_token", token_id))
        log.info("api_token:revoked", user_id=owner_id, token_id=token_id)


def revoke_all_api_tokens(session: Session, owner_id: int, now: datetime) -> int:
    """Revoke every token of the owner that is not revoked yet; return how many."""
    revoked = changed_rows(
        session,
        update(ApiToken)
        .where(ApiToken.user_id == owner_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now),
    )
    return int(revoked)


def revoke_all_api_tokens_audited(
    session: Session, origin: Origin, owner_id: int, reason: RevocationReason, now: datetime
) -> int:
    """Revoke every token of the owner that is not revoked yet; return how many.

    When any was revoked, one api_token:revoked event on the owner records the reason and the
    number, in the same transaction.
    """
    revoked = revoke_all_api_tokens(session, owner_id, now)
    if revoked:
        record_as(
            session,
            origin,
            AuditEvent.API_TOKEN_REVOKED,
            Target.of("user", owner_id),
            {"reason": reason, "revoked": revoked},
        )
        log.info("api_token:all_revoked", user_id=owner_id, revoked=revoked, reason=reason)
    return revoked


def find_usable_api_token(session: Session, token_hash: str, now: datetime) -> ApiToken | str:
    """Return the token with ``token_hash`` if it may be used now, or why it may not."""
    record = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if record is None:
        return "unknown_api_token"
    problem = unusable_reason(record.revoked_at, record.expires_at, now)
    return record if problem is None else problem


def unusable_reason(revoked_at: datetime | None, expires_at: datetime, now: datetime) -> str | None:
    """Return why a token with these times may not be used at ``now``, or None if it may."""
    if revoked_at is not None:
        return "api_token_revoked"
    if now >= expires_at:
        return "api_token_expired"
    return None


def granted_scopes(record: ApiToken) -> frozenset[Permission]:
    """Return the token's scopes that its owner's current role still grants."""
    return scopes_granted(record.scopes, record.user.role)


def scopes_granted(scopes: Sequence[str], role: str) -> frozenset[Permission]:
    """Return the permissions named in ``scopes`` that ``role`` may still delegate."""
    # Called on every request authenticated by an API token, with few distinct values.
    return _granted(tuple(scopes), role)


@functools.lru_cache(maxsize=1024)
def _granted(scopes: tuple[str, ...], role: str) -> frozenset[Permission]:
    named = {permission for permission in Permission if permission.value in scopes}
    return frozenset(named) & delegable_permissions(role)


def record_use(database: Database, token_id: int, now: datetime) -> None:
    """Set the token's last use to ``now`` unless it was set less than a minute ago."""
    with database.transaction() as session:
        changed_rows(
            session,
            update(ApiToken)
            .where(
                ApiToken.id == token_id,
                or_(
                    ApiToken.last_used_at.is_(None),
                    ApiToken.last_used_at <= now - LAST_USE_PRECISION,
                ),
            )
            .values(last_used_at=now),
        )


def _check_name(name: str) -> None:
    if not name.strip() or not name.isprintable():
        raise InvalidInput(
            "name must contain visible characters and no control characters",
            details=[
                Violation("name", "must contain visible characters and no control characters")
            ],
        )


def _checked_scopes(role: str, scopes: Sequence[Permission]) -> frozenset[Permission]:
    if not scopes:
        raise InvalidInput(
            "scopes must name at least one permission",
            details=[Violation("scopes", "must name at least one permission")],
        )
    allowed = delegable_permissions(role)
    for index, scope in enumerate(scopes):
        if scope not in allowed:
            problem = _scope_problem(role, scope)
            raise InvalidInput(
                f"scopes.{index}: {problem}", details=[Violation(f"scopes.{index}", problem)]
            )
    return frozenset(scopes)


def _scope_problem(role: str, scope: Permission) -> str:
    if scope in permissions_of(role):
        return f"{scope} cannot be given to an API token"
    return f"{scope} is not a permission of your role"
