"""HTTP routes of the secrets; each names its permission and calls the service.

There is no route that returns a value: resolving one is server code only
(llero.academy.resolution).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from llero.academy import service
from llero.academy.schemas import (
    GrantCreate,
    GrantList,
    GrantOut,
    SecretCreate,
    SecretDetail,
    SecretList,
    SecretQuery,
    SecretRotate,
)
from llero.access.permissions import Permission, principal_of, requires
from llero.access.roles import Role
from llero.crypto import Secret
from llero.vault.service import VaultService
from llero.web.clients import origin_of
from llero.web.deps import SessionDep
from llero.web.schemas import ID_MAX

SecretIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
VersionPath = Annotated[int, Path(ge=1, le=ID_MAX)]
GrantIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]

router = APIRouter(prefix="/secrets", tags=["secrets"])


def get_vault(request: Request) -> VaultService:
    vault: VaultService = request.app.state.vault
    return vault


def get_caller(request: Request) -> service.Caller:
    principal = principal_of(request)
    return service.Caller(principal.user_id, is_admin=principal.role == Role.ADMIN)


VaultDep = Annotated[VaultService, Depends(get_vault)]
CallerDep = Annotated[service.Caller, Depends(get_caller)]


@router.post("", status_code=201, dependencies=[requires(Permission.SECRET_CREATE)])
def create_secret(
    request: Request,
    session: SessionDep,
    *,
    vault: VaultDep,
    caller: CallerDep,
    body: SecretCreate,
) -> SecretDetail:
    """Store a new secret owned by the caller; the response holds only metadata and the hint."""
    new = service.NewSecret(
        name=body.name,
        kind=body.kind,
        value=Secret(body.value.get_secret_value()),
        description=body.description,
        owner_user_id=caller.user_id,
        expires_at=body.expires_at,
    )
    view = service.create_secret(session, vault, caller, origin_of(request), new)
    return SecretDetail.of(view)


@router.get("", dependencies=[requires(Permission.SECRET_READ)])
def list_secrets(
    session: SessionDep, caller: CallerDep, query: Annotated[SecretQuery, Query()]
) -> SecretList:
    """Return the caller's secrets (every secret for an admin), ordered by id."""
    page = service.list_secrets(session, caller, limit=query.limit, offset=query.offset)
    return SecretList.of(page)


@router.get("/{secret_id}", dependencies=[requires(Permission.SECRET_READ)])
def get_secret(session: SessionDep, caller: CallerDep, secret_id: SecretIdPath) -> SecretDetail:
    return SecretDetail.of(service.get_secret(session, caller, secret_id))


@router.post("/{secret_id}/versions", dependencies=[requires(Permission.SECRET_ROTATE)])
def rotate_secret(
    request: Request,
    session: SessionDep,
    *,
    vault: VaultDep,
    caller: CallerDep,
    secret_id: SecretIdPath,
    body: SecretRotate,
) -> SecretDetail:
    """Replace the value with a new current version; the old one stays until it is destroyed."""
    value = Secret(body.value.get_secret_value())
    view = service.rotate_secret(
        session,
        vault,
        caller,
        origin_of(request),
        secret_id=secret_id,
        value=value,
        expires_at=body.expires_at,
    )
    return SecretDetail.of(view)


@router.delete("/{secret_id}/versions/{version}", dependencies=[requires(Permission.SECRET_DELETE)])
def destroy_version(
    request: Request,
    session: SessionDep,
    *,
    vault: VaultDep,
    caller: CallerDep,
    secret_id: SecretIdPath,
    version: VersionPath,
) -> SecretDetail:
    """Destroy an old version's value; the version stays listed as destroyed."""
    view = service.destroy_version(
        session, vault, caller, origin_of(request), secret_id=secret_id, version=version
    )
    return SecretDetail.of(view)


@router.delete("/{secret_id}", status_code=204, dependencies=[requires(Permission.SECRET_DELETE)])
def delete_secret(
    request: Request,
    session: SessionDep,
    vault: VaultDep,
    caller: CallerDep,
    secret_id: SecretIdPath,
) -> Response:
    """Delete the secret and its key, so no copy of any of its values can be decrypted again."""
    service.delete_secret(session, vault, caller, origin_of(request), secret_id)
    return Response(status_code=204)


@router.get("/{secret_id}/grants", dependencies=[requires(Permission.SECRET_READ)])
def list_grants(session: SessionDep, caller: CallerDep, secret_id: SecretIdPath) -> GrantList:
    grants = service.list_grants(session, caller, secret_id)
    return GrantList(items=[GrantOut.model_validate(grant) for grant in grants])


@router.post(
    "/{secret_id}/grants", status_code=201, dependencies=[requires(Permission.SECRET_GRANT)]
)
def grant_secret(
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    secret_id: SecretIdPath,
    body: GrantCreate,
) -> GrantOut:
    """Let an agent use the secret for one purpose."""
    grant = service.grant_secret(
        session,
        caller,
        origin_of(request),
        secret_id=secret_id,
        agent_id=body.agent_id,
        purpose=body.purpose,
    )
    return GrantOut.model_validate(grant)


@router.delete(
    "/{secret_id}/grants/{grant_id}",
    status_code=204,
    dependencies=[requires(Permission.SECRET_REVOKE)],
)
def revoke_grant(
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    secret_id: SecretIdPath,
    grant_id: GrantIdPath,
) -> Response:
    service.revoke_grant(session, caller, origin_of(request), secret_id, grant_id)
    return Response(status_code=204)
