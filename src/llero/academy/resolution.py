"""Resolving a secret for an agent: the one way a plaintext value leaves the vault.

Only server code calls ``resolve_for_agent`` (the Command Center, when an agent calls its
provider); no route exposes it. Each call checks, in this order, that the agent exists, is active
(not disabled or quarantined) and not expired, that a grant names this agent, secret and purpose,
that a provider key is used for the agent's own provider, and that the secret has not expired.
A success writes a use record and a ``secret:used`` audit record in the caller's session.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from llero.academy.models import SESSION_REF_MAX, SecretGrant, SecretUse
from llero.academy.purposes import check_purpose, provider_matches
from llero.audit.context import Actor, Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.barracks.models import Agent, AgentStatus
from llero.crypto import Secret
from llero.errors import InvalidInput, Refused, Violation
from llero.logs import get_logger
from llero.storage.base import utc_now
from llero.storage.generation import GenerationCache
from llero.storage.prepared import PreparedStatement
from llero.vault.models import SecretKind, SecretVersion, StoredSecret
from llero.vault.service import VaultService

log = get_logger("llero.academy")

# Run on every provider call with a key, so it skips the ORM's unit of work.
_INSERT_USE = PreparedStatement(
    cast(Table, SecretUse.__table__).insert(),
    ["secret_id", "agent_id", "version", "purpose", "session_ref", "used_at"],
)

SESSION_REF_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")


class DenialReason(StrEnum):
    AGENT_EXPIRED = "agent_expired"
    AGENT_NOT_ACTIVE = "agent_not_active"
    AGENT_NOT_FOUND = "agent_not_found"
    AGENT_QUARANTINED = "agent_quarantined"
    NOT_GRANTED = "not_granted"
    SECRET_EXPIRED = "secret_expired"  # noqa: S105 - a reason code, not a secret
    WRONG_PROVIDER = "wrong_provider"


# The remedy of each denial, named in the message the caller gets.
_REMEDIES = {
    DenialReason.AGENT_EXPIRED: "the agent has expired; its owner sets a later expires_at",
    DenialReason.AGENT_NOT_ACTIVE: "the agent is disabled; its owner sets its status to active",
    DenialReason.AGENT_NOT_FOUND: "the agent does not exist",
    DenialReason.AGENT_QUARANTINED: "the agent is quarantined; an admin releases it",
    DenialReason.NOT_GRANTED: (
        "the agent holds no grant of this secret for this purpose; the secret's owner or an "
        "admin grants it with POST /api/secrets/{secret_id}/grants"
    ),
    DenialReason.SECRET_EXPIRED: "the secret has expired; its owner adds a new version",
    DenialReason.WRONG_PROVIDER: (
        "the key belongs to another provider than the agent's; grant the key of the agent's "
        "provider, for the purpose provider:<name>"
    ),
}


class ResolutionDenied(Refused):
    """The agent may not use the secret now; ``reason`` says which check failed."""

    code = "resolution_denied"

    def __init__(self, reason: DenialReason, agent_id: int, secret_id: int) -> None:
        remedy = _REMEDIES[reason].format(secret_id=secret_id)
        super().__init__(f"agent {agent_id} may not use secret {secret_id}: {reason} ({remedy})")
        self.reason = reason


def resolve_for_agent(
    session: Session,
    vault: VaultService,
    *,
    agent_id: int,
    secret_id: int,
    purpose: str,
    session_ref: str,
    origin: Origin | None = None,
    now: datetime | None = None,
    cache: GenerationCache | None = None,
) -> Secret[str]:
    """Return the current value of a secret for ``agent_id`` to use for ``purpose``.

    Raises ResolutionDenied when a check fails, InvalidInput for a malformed purpose or
    session reference, and the vault's errors (VaultSealed, CiphertextInvalid). The caller
    commits the session to keep the use record; rolling back discards it with the audit record.
    With ``cache``, the checks that depend only on the configuration are kept until it changes;
    the expiry times are checked on every call.
    """
    moment = now or utc_now()
    _check_session_ref(session_ref)
    try:
        if cache is None:
            checked = _checked_grant(session, agent_id, secret_id, purpose)
        else:
            checked = cache.get(
                session,
                ("secret_grant", agent_id, secret_id, purpose),
                lambda: _checked_grant(session, agent_id, secret_id, purpose),
            )
        version = checked.version_at(moment)
    except ResolutionDenied as denial:
        log.warning(
            "secret_resolution_denied",
            agent_id=agent_id,
            target_id=secret_id,
            purpose=purpose,
            reason=str(denial.reason),
        )
        raise

    acting = origin or Origin(Actor.agent(agent_id))
    value = vault.read_plaintext(
        secret_id, version, origin=acting, session=session, cache=cache
    )
    _INSERT_USE.execute(
        session.connection(),
        {
            "secret_id": secret_id,
            "agent_id": agent_id,
            "version": version,
            "purpose": purpose,
            "session_ref": session_ref,
            "used_at": moment,
        },
    )
    detail = {"agent_id": agent_id, "purpose": purpose, "session_ref": session_ref}
    record_as(
        session,
        acting,
        AuditEvent.SECRET_USED,
        Target.of("secret", secret_id),
        {**detail, "version": version},
    )
    return value


@dataclass(frozen=True)
class _CheckedGrant:
    """A grant that passed every check but the two expiry times, which depend on the time."""

    agent_id: int
    secret_id: int
    version: int
    agent_expires_at: datetime | None
    version_expires_at: datetime | None

    def version_at(self, moment: datetime) -> int:
        """Return the version to use at ``moment``; raise ResolutionDenied when one expired."""
        if self.agent_expires_at is not None and self.agent_expires_at <= moment:
            raise ResolutionDenied(DenialReason.AGENT_EXPIRED, self.agent_id, self.secret_id)
        if self.version_expires_at is not None and self.version_expires_at <= moment:
            raise ResolutionDenied(DenialReason.SECRET_EXPIRED, self.agent_id, self.secret_id)
        return self.version


def _checked_grant(session: Session, agent_id: int, secret_id: int, purpose: str) -> _CheckedGrant:
    """Run every check that does not depend on the time."""

    def deny(reason: DenialReason) -> ResolutionDenied:
        return ResolutionDenied(reason, agent_id, secret_id)

    agent = session.get(Agent, agent_id)
    if agent is None:
        raise deny(DenialReason.AGENT_NOT_FOUND)
    if agent.status == AgentStatus.QUARANTINED:
        raise deny(DenialReason.AGENT_QUARANTINED)
    if agent.status != AgentStatus.ACTIVE:
        raise deny(DenialReason.AGENT_NOT_ACTIVE)

    granted = session.scalar(
        select(SecretGrant.id).where(
            SecretGrant.secret_id == secret_id,
            SecretGrant.agent_id == agent_id,
            SecretGrant.purpose == purpose,
        )
    )
    secret = session.get(StoredSecret, secret_id)
    if granted is None or secret is None:
        raise deny(DenialReason.NOT_GRANTED)
    name = check_purpose(secret.kind, purpose)
    if secret.kind == SecretKind.PROVIDER_API_KEY and not provider_matches(name, agent.provider):
        # The agent's provider changed after the grant; the key stays with its provider.
        raise deny(DenialReason.WRONG_PROVIDER)

    expires_at = session.scalar(
        select(SecretVersion.expires_at).where(
            SecretVersion.secret_id == secret_id,
            SecretVersion.version == secret.current_version,
        )
    )
    return _CheckedGrant(agent_id, secret_id, secret.current_version, agent.expires_at, expires_at)


def _check_session_ref(session_ref: str) -> None:
    if len(session_ref) > SESSION_REF_MAX or not SESSION_REF_PATTERN.fullmatch(session_ref):
        raise InvalidInput(
            f"session_ref: must be 1 to {SESSION_REF_MAX} characters of letters, digits, "
            "'.', '_', ':', '-'",
            details=[Violation("session_ref", "invalid session reference")],
        )
