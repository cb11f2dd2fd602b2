"""HTTP routes of incident response; each is an admin call with its own permission.

The CLI offers the same actions (`llero incident`, `llero agents quarantine`, `llero keys`), so
an admin who cannot sign in any more can still act from the shell.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Request

from llero.access.permissions import Permission, requires
from llero.barracks import quarantine
from llero.barracks.schemas import AgentDetail
from llero.identity.signing_keys import load_signing_key_ring
from llero.identity.tokens import AccessTokenService
from llero.incident import service
from llero.incident.schemas import (
    LockdownOut,
    LockdownUpdate,
    QuarantineRequest,
    ReleaseRequest,
    RevokeAllOut,
    RevokeAllRequest,
    SigningKeyRotated,
    SigningKeyRotation,
)
from llero.storage.base import utc_now
from llero.web.clients import origin_of
from llero.web.deps import SessionDep, SettingsDep
from llero.web.schemas import ID_MAX

AgentIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]

router = APIRouter()


@router.post(
    "/incident/revoke-all",
    dependencies=[requires(Permission.INCIDENT_REVOKE_ALL)],
    tags=["incident"],
)
def revoke_all(request: Request, session: SessionDep, body: RevokeAllRequest) -> RevokeAllOut:
    """End every session, refresh token, API token, one-time code and access token at once.

    The caller's own credential ends too: sign in again afterwards.
    """
    revoked = service.revoke_all(session, origin_of(request), utc_now())
    return RevokeAllOut.model_validate(revoked)


@router.get(
    "/incident/lockdown", dependencies=[requires(Permission.LOCKDOWN_READ)], tags=["incident"]
)
def read_lockdown(session: SessionDep) -> LockdownOut:
    return LockdownOut.model_validate(service.lockdown_state(session))


@router.put(
    "/incident/lockdown", dependencies=[requires(Permission.LOCKDOWN_UPDATE)], tags=["incident"]
)
def set_lockdown(request: Request, session: SessionDep, body: LockdownUpdate) -> LockdownOut:
    """Switch the lockdown on or off. While it is on, every change by a non-admin gets 423."""
    state = service.set_lockdown(
        session, origin_of(request), enabled=body.enabled, reason=body.reason, now=utc_now()
    )
    return LockdownOut.model_validate(state)


@router.post(
    "/agents/{agent_id}/quarantine",
    dependencies=[requires(Permission.AGENT_QUARANTINE)],
    tags=["agents"],
)
def quarantine_agent(
    request: Request, session: SessionDep, agent_id: AgentIdPath, body: QuarantineRequest
) -> AgentDetail:
    """Stop the agent from running and suspend its grants until it is released."""
    now = utc_now()
    agent = quarantine.quarantine_agent(
        session, origin_of(request), agent_id, reason=body.reason, now=now
    )
    request.app.state.alerts.agent_quarantined(agent.id, agent.name)
    return AgentDetail.of(agent, now)


@router.post(
    "/agents/{agent_id}/release",
    dependencies=[requires(Permission.AGENT_RELEASE)],
    tags=["agents"],
)
def release_agent(
    request: Request, session: SessionDep, agent_id: AgentIdPath, body: ReleaseRequest
) -> AgentDetail:
    """Lift the quarantine; the agent becomes active with its toolkit and grants."""
    now = utc_now()
    agent = quarantine.release_agent(session, origin_of(request), agent_id, now=now)
    return AgentDetail.of(agent, now)


@router.post(
    "/keys/signing/rotate",
    dependencies=[requires(Permission.SIGNING_KEY_ROTATE)],
    tags=["incident"],
)
def rotate_signing_key(
    request: Request, session: SessionDep, settings: SettingsDep, body: SigningKeyRotation
) -> SigningKeyRotated:
    """Make a new signing key current. Tokens signed before keep working until they expire.

    This process switches to the new key at once. Restart any other `llero serve` process that
    shares the data directory, because it rejects tokens signed with the new key until then.
    """
    kid, previous = service.rotate_signing(session, origin_of(request), settings.keys_dir)
    identity = request.app.state.identity
    identity.tokens = AccessTokenService(
        identity.tokens.policy, load_signing_key_ring(settings.keys_dir), clock=identity.now
    )
    return SigningKeyRotated(kid=kid, previous_kid=previous)
