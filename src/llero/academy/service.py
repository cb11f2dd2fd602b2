"""Secrets as users manage them: create, list, read metadata, replace the value, destroy old
versions, delete, and grant them to agents.

Every function works in the caller's session and writes its audit record there, so the action and
its record commit together or not at all. Values go into VaultService in the same session and
never come back out: nothing here returns a value, only metadata and the last-four hint.

A developer sees and changes only the secrets they own. To them another user's secret does not
exist (NotFound), so its id, name and existence stay hidden. Admins see and change every secret.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from llero.academy.models import SecretGrant, SecretUse
from llero.academy.purposes import check_purpose, provider_matches
from llero.access.permissions import PermissionDenied
from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.barracks.models import Agent
from llero.crypto import Secret
from llero.errors import Conflict, InvalidInput, NotFound, Refused, Violation
from llero.logs import get_logger
from llero.storage.base import utc_now
from llero.vault.models import SecretKind, SecretVersion, StoredSecret
from llero.vault.service import VaultService, VersionInfo, version_info

log = get_logger("llero.academy")

LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200


@dataclass(frozen=True)
class Caller:
    """The actor on secrets: a signed-in user, or Llero itself (the CLI) with an admin's reach."""

    user_id: int | None
    is_admin: bool

    @classmethod
    def system(cls) -> "Caller":
        return cls(user_id=None, is_admin=True)


@dataclass(frozen=True)
class NewSecret:
    name: str
    kind: SecretKind
    value: Secret[str]
    description: str = ""
    owner_user_id: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class SecretView:
    """A secret's metadata: never the value, only the hint of the current version."""

    id: int
    name: str
    kind: str
    description: str
    owner_user_id: int | None
    current_version: int
    hint: str
    created_at: datetime
    # When the value was last replaced, None while version 1 is current.
    rotated_at: datetime | None
    last_used_at: datetime | None
    # The current version's expiry; after it the secret cannot be used.
    expires_at: datetime | None
    versions: tuple[VersionInfo, ...]


@dataclass(frozen=True)
class SecretPage:
    items: list[SecretView]
    total: int
    limit: int
    offset: int


def create_secret(
    session: Session, vault: VaultService, caller: Caller, origin: Origin, new: NewSecret
) -> SecretView:
    """Store a new secret owned by ``new.owner_user_id``; raise InvalidInput or Conflict."""
    _check_expiry(new.expires_at)
    info = vault.create_secret(
        name=new.name,
        kind=new.kind,
        value=new.value,
        description=new.description,
        owner_user_id=new.owner_user_id,
        expires_at=new.expires_at,
        origin=origin,
        session=session,
    )
    detail = {"name": new.name, "kind": str(new.kind), "version": info.version}
    record_as(session, origin, AuditEvent.SECRET_CREATED, _target(info.secret_id), detail)
    return get_secret(session, caller, info.secret_id)


def list_secrets(
    session: Session, caller: Caller, *, limit: int = LIST_LIMIT_DEFAULT, offset: int = 0
) -> SecretPage:
    """Return one page of the secrets ``caller`` may see, ordered by id."""
    query = select(StoredSecret)
    if not caller.is_admin:
        query = query.where(StoredSecret.owner_user_id == caller.user_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    secrets = session.scalars(query.order_by(StoredSecret.id).limit(limit).offset(offset)).all()
    versions = _versions_of(session, [secret.id for secret in secrets])
    items = [_view(secret, versions.get(secret.id, [])) for secret in secrets]
    return SecretPage(items=items, total=total, limit=limit, offset=offset)


def get_secret(session: Session, caller: Caller, secret_id: int) -> SecretView:
    secret = visible_secret(session, caller, secret_id)
    return _view(secret, _versions_of(session, [secret_id]).get(secret_id, []))


def find_secret_id(session: Session, caller: Caller, name_or_id: str) -> int:
    """Return the id of the secret named ``name_or_id``, or with that id; raise NotFound."""
    by_name = session.scalar(select(StoredSecret.id).where(StoredSecret.name == name_or_id))
    if by_name is not None:
        return visible_secret(session, caller, by_name).id
    if name_or_id.isdigit() and len(name_or_id) <= len(str(2**31 - 1)):
        return visible_secret(session, caller, int(name_or_id)).id
    raise NotFound(f"secret {name_or_id!r} not found")


def rotate_secret(
    session: Session,
    vault: VaultService,
    caller: Caller,
    origin: Origin,
    *,
    secret_id: int,
    value: Secret[str],
    expires_at: datetime | None = None,
) -> SecretView:
    """Store ``value`` as the secret's next version and make it current."""
    visible_secret(session, caller, secret_id)
    _check_expiry(expires_at)
    info = vault.add_version(
        secret_id, value, expires_at=expires_at, origin=origin, session=session
    )
    record_as(
        session, origin, AuditEvent.SECRET_ROTATED, _target(secret_id), {"version": info.version}
    )
    return get_secret(session, caller, secret_id)


def destroy_version(
    session: Session,
    vault: VaultService,
    caller: Caller,
    origin: Origin,
    *,
    secret_id: int,
    version: int,
) -> SecretView:
    """Destroy an old version's value; the current version can only go with the whole secret."""
    secret = visible_secret(session, caller, secret_id)
    if version == secret.current_version:
        raise Refused(
            f"version {version} is the current value of secret {secret_id}; replace the value "
            "first, or delete the secret"
        )
    vault.destroy_version(secret_id, version, origin=origin, session=session)
    record_as(
        session,
        origin,
        AuditEvent.SECRET_VERSION_DESTROYED,
        _target(secret_id),
        {"version": version},
    )
    return get_secret(session, caller, secret_id)


def delete_secret(
    session: Session, vault: VaultService, caller: Caller, origin: Origin, secret_id: int
) -> None:
    """Delete a secret with its key, versions, grants and use records (see VaultService)."""
    secret = visible_secret(session, caller, secret_id)
    name = secret.name
    # The grants and uses go first, so the result does not depend on the database cascading.
    session.execute(delete(SecretGrant).where(SecretGrant.secret_id == secret_id))
    session.execute(delete(SecretUse).where(SecretUse.secret_id == secret_id))
    versions = vault.delete_secret(secret_id, origin=origin, session=session)
    session.expunge(secret)
    detail = {"name": name, "versions": versions}
    record_as(session, origin, AuditEvent.SECRET_DELETED, _target(secret_id), detail)


def list_grants(session: Session, caller: Caller, secret_id: int) -> list[SecretGrant]:
    visible_secret(session, caller, secret_id)
    return list(
        session.scalars(
            select(SecretGrant).where(SecretGrant.secret_id == secret_id).order_by(SecretGrant.id)
        )
    )


def grant_secret(
    session: Session,
    caller: Caller,
    origin: Origin,
    *,
    secret_id: int,
    agent_id: int,
    purpose: str,
) -> SecretGrant:
    """Let an agent use a secret for ``purpose``; see llero.academy.purposes for the format.

    A developer may grant only their own secrets (others are NotFound) to their own agents
    (others are PermissionDenied). A provider key can be granted only for the agent's provider.
    """
    secret = visible_secret(session, caller, secret_id)
    name = check_purpose(secret.kind, purpose)
    agent = _grantable_agent(session, caller, agent_id)
    if secret.kind == SecretKind.PROVIDER_API_KEY and not provider_matches(name, agent.provider):
        raise InvalidInput(
            f"purpose: agent {agent_id} calls provider {agent.provider!r}, not {name!r}",
            details=[Violation("purpose", "provider differs from the agent's provider")],
        )
    if _find_grant(session, secret_id, agent_id, purpose) is not None:
        raise Conflict(f"agent {agent_id} already holds secret {secret_id} for {purpose}")

    grant = SecretGrant(
        secret_id=secret_id,
        agent_id=agent_id,
        purpose=purpose,
        granted_by_user_id=caller.user_id,
    )
    session.add(grant)
    session.flush()
    detail = {"grant_id": grant.id, "agent_id": agent_id, "purpose": purpose}
    record_as(session, origin, AuditEvent.GRANT_CREATED, _target(secret_id), detail)
    return grant


def revoke_grant(
    session: Session, caller: Caller, origin: Origin, secret_id: int, grant_id: int
) -> None:
    """Delete a grant; the next resolution through it is denied."""
    visible_secret(session, caller, secret_id)
    grant = session.get(SecretGrant, grant_id)
    if grant is None or grant.secret_id != secret_id:
        raise NotFound(f"grant {grant_id} of secret {secret_id} not found")
    detail = {"grant_id": grant.id, "agent_id": grant.agent_id, "purpose": grant.purpose}
    session.delete(grant)
    session.flush()
    record_as(session, origin, AuditEvent.GRANT_REVOKED, _target(secret_id), detail)


def visible_secret(session: Session, caller: Caller, secret_id: int) -> StoredSecret:
    """Return the secret if ``caller`` may see it; raise NotFound otherwise, owned or not."""
    secret = session.get(StoredSecret, secret_id)
    if secret is None or not (caller.is_admin or secret.owner_user_id == caller.user_id):
        raise NotFound(f"secret {secret_id} not found")
    return secret


def agent_owner_id(agent: Agent) -> int | None:
    """Return the agent's owner, or None while agents record no owner.

    NOTE: agents gain an owner column in another change. Until it exists every agent has no
    owner here, so only admins can grant secrets.
    """
    owner: Any = getattr(agent, "owner_user_id", None)
    return owner if isinstance(owner, int) else None


def _grantable_agent(session: Session, caller: Caller, agent_id: int) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    if not caller.is_admin and agent_owner_id(agent) != caller.user_id:
        log.info("secret_grant_denied", reason="agent_not_owned", agent_id=agent_id)
        raise PermissionDenied("you can grant secrets only to agents you own")
    return agent


def _find_grant(
    session: Session, secret_id: int, agent_id: int, purpose: str
) -> SecretGrant | None:
    return session.scalars(
        select(SecretGrant).where(
            SecretGrant.secret_id == secret_id,
            SecretGrant.agent_id == agent_id,
            SecretGrant.purpose == purpose,
        )
    ).one_or_none()


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise InvalidInput(
            "expires_at: must include a time zone",
            details=[Violation("expires_at", "missing time zone")],
        )
    if expires_at <= utc_now():
        raise InvalidInput(
            "expires_at: must be in the future",
            details=[Violation("expires_at", "not in the future")],
        )


def _versions_of(session: Session, secret_ids: Sequence[int]) -> dict[int, list[VersionInfo]]:
    if not secret_ids:
        return {}
    rows = session.scalars(
        select(SecretVersion)
        .where(SecretVersion.secret_id.in_(secret_ids))
        .order_by(SecretVersion.secret_id, SecretVersion.version)
    )
    found: dict[int, list[VersionInfo]] = {}
    for row in rows:
        found.setdefault(row.secret_id, []).append(version_info(row))
    return found


def _view(secret: StoredSecret, versions: list[VersionInfo]) -> SecretView:
    current = next((info for info in versions if info.version == secret.current_version), None)
    used = [info.last_used_at for info in versions if info.last_used_at is not None]
    replaced = current is not None and secret.current_version > 1
    return SecretView(
        id=secret.id,
        name=secret.name,
        kind=secret.kind,
        description=secret.description,
        owner_user_id=secret.owner_user_id,
        current_version=secret.current_version,
        hint=current.hint if current else "",
        created_at=secret.created_at,
        rotated_at=current.created_at if replaced and current else None,
        last_used_at=max(used, default=None),
        expires_at=current.expires_at if current else None,
        versions=tuple(versions),
    )


def _target(secret_id: int) -> Target:
    return Target.of("secret", secret_id)
