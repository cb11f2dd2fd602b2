"""HTTP routes of the provider configurations; each names its permission and calls the service."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from llero.academy import providers
from llero.academy.allowlist import egress_policy
from llero.academy.provider_schemas import (
    ProviderCreate,
    ProviderDetail,
    ProviderList,
    ProviderUpdate,
    ProviderView,
    SecretAttach,
    prices_of,
)
from llero.access.permissions import Permission, principal_of, requires
from llero.egress import EgressPolicy
from llero.web.clients import origin_of
from llero.web.deps import SessionDep, SettingsDep
from llero.web.schemas import ID_MAX

ProviderIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]

router = APIRouter(prefix="/providers", tags=["providers"])


def get_policy(settings: SettingsDep, session: SessionDep) -> EgressPolicy:
    return egress_policy(settings, session)


PolicyDep = Annotated[EgressPolicy, Depends(get_policy)]


def _view(request: Request, provider: providers.Provider) -> ProviderDetail | ProviderView:
    if Permission.PROVIDER_UPDATE in principal_of(request).permissions:
        return ProviderDetail.of(provider)
    return ProviderView.of(provider)


@router.get("", dependencies=[requires(Permission.PROVIDER_READ)])
def list_providers(request: Request, session: SessionDep) -> ProviderList:
    """Return every provider by name; base URLs and secret ids only to provider:update."""
    return ProviderList(items=[_view(request, p) for p in providers.list_providers(session)])


@router.post("", status_code=201, dependencies=[requires(Permission.PROVIDER_CREATE)])
def create_provider(
    request: Request, session: SessionDep, policy: PolicyDep, body: ProviderCreate
) -> ProviderDetail:
    new = providers.NewProvider(
        name=body.name,
        protocol=body.protocol,
        base_url=body.base_url,
        secret_id=body.secret_id,
        models=prices_of(body.models),
    )
    provider = providers.create_provider(session, origin_of(request), policy, new)
    return ProviderDetail.of(provider)


@router.get("/{provider_id}", dependencies=[requires(Permission.PROVIDER_READ)])
def get_provider(
    request: Request, session: SessionDep, provider_id: ProviderIdPath
) -> ProviderDetail | ProviderView:
    return _view(request, providers.get_provider(session, provider_id))


@router.patch("/{provider_id}", dependencies=[requires(Permission.PROVIDER_UPDATE)])
def update_provider(
    request: Request,
    session: SessionDep,
    policy: PolicyDep,
    provider_id: ProviderIdPath,
    body: ProviderUpdate,
) -> ProviderDetail:
    """Change the fields present in the body. A new base URL detaches the provider's secret."""
    origin = origin_of(request)
    provider = providers.update_provider(session, origin, policy, provider_id, body.changes())
    return ProviderDetail.of(provider)


@router.delete(
    "/{provider_id}", status_code=204, dependencies=[requires(Permission.PROVIDER_DELETE)]
)
def delete_provider(request: Request, session: SessionDep, provider_id: ProviderIdPath) -> Response:
    providers.delete_provider(session, origin_of(request), provider_id)
    return Response(status_code=204)


@router.put("/{provider_id}/secret", dependencies=[requires(Permission.PROVIDER_UPDATE)])
def attach_secret(
    request: Request, session: SessionDep, provider_id: ProviderIdPath, body: SecretAttach
) -> ProviderDetail:
    """Make a stored provider API key the provider's key, at its current base URL."""
    provider = providers.attach_secret(session, origin_of(request), provider_id, body.secret_id)
    return ProviderDetail.of(provider)


@router.delete("/{provider_id}/secret", dependencies=[requires(Permission.PROVIDER_UPDATE)])
def detach_secret(
    request: Request, session: SessionDep, provider_id: ProviderIdPath
) -> ProviderDetail:
    provider = providers.detach_secret(session, origin_of(request), provider_id)
    return ProviderDetail.of(provider)
