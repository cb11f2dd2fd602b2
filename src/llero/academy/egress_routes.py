"""HTTP routes of the egress allowlist; each names its permission and calls the service."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from llero.academy import allowlist
from llero.academy.egress_schemas import ConfiguredEgress, EgressOut, EntryCreate, EntryOut
from llero.access.permissions import Permission, principal_of, requires
from llero.web.clients import origin_of
from llero.web.deps import SessionDep, SettingsDep
from llero.web.schemas import ID_MAX

EntryIdPath = Annotated[int, Path(ge=1, le=ID_MAX)]

router = APIRouter(prefix="/egress", tags=["egress"])


@router.get("", dependencies=[requires(Permission.EGRESS_READ)])
def read_egress(session: SessionDep, settings: SettingsDep) -> EgressOut:
    """Return the allowlist from the settings and the entries admins added."""
    return EgressOut(
        settings=ConfiguredEgress(
            hosts=settings.egress_allowed_hosts, endpoints=settings.egress_allowed_endpoints
        ),
        entries=[EntryOut.model_validate(entry) for entry in allowlist.list_entries(session)],
    )


@router.post("/entries", status_code=201, dependencies=[requires(Permission.EGRESS_UPDATE)])
def add_entry(
    request: Request, session: SessionDep, settings: SettingsDep, body: EntryCreate
) -> EntryOut:
    """Allow a host over https, or an exact endpoint that may be private or loopback."""
    entry = allowlist.add_entry(
        session,
        origin_of(request),
        settings,
        body.kind,
        body.value,
        user_id=principal_of(request).user_id,
    )
    return EntryOut.model_validate(entry)


@router.delete(
    "/entries/{entry_id}", status_code=204, dependencies=[requires(Permission.EGRESS_UPDATE)]
)
def remove_entry(request: Request, session: SessionDep, entry_id: EntryIdPath) -> Response:
    allowlist.remove_entry(session, origin_of(request), entry_id)
    return Response(status_code=204)
