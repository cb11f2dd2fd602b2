"""HTTP routes of the audit trail: search it, export it, verify it and purge old records.

Each route names its own permission, so an API token for a log collector can be limited to
``audit:export`` without the right to purge.
"""

from collections.abc import Iterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from llero.access.permissions import Permission, requires
from llero.audit import service
from llero.audit.chain import AuditChainError
from llero.audit.events import AuditEvent
from llero.audit.schemas import (
    AuditEventOut,
    AuditPageOut,
    AuditPageQuery,
    AuditSearch,
    PurgeOut,
    VerifyOut,
    VerifyQuery,
)
from llero.errors import Refused
from llero.web.clients import origin_of
from llero.web.deps import SessionDep, SettingsDep, get_database

log = structlog.get_logger("llero.audit")

JSON_LINES = "application/jsonl"

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("/events", dependencies=[requires(Permission.AUDIT_READ)])
def list_events(session: SessionDep, query: Annotated[AuditPageQuery, Query()]) -> AuditPageOut:
    """Return one page of matching audit records, newest first unless order is oldest."""
    page = service.query(
        session,
        query.to_filter(),
        after=query.after,
        limit=query.limit,
        newest_first=query.order == "newest",
    )
    events = [AuditEventOut.model_validate(service.record_as_dict(found)) for found in page.records]
    return AuditPageOut(events=events, next_cursor=page.next_cursor)


@router.get(
    "/export",
    dependencies=[requires(Permission.AUDIT_EXPORT)],
    response_class=StreamingResponse,
    responses={200: {"content": {JSON_LINES: {}}, "description": "One record per line."}},
)
def export_events(request: Request, query: Annotated[AuditSearch, Query()]) -> StreamingResponse:
    """Stream the matching audit records as JSON lines, oldest first.

    The export is recorded as an audit:exported event and committed before the first line is
    sent, so a failed record stops the export instead of letting it go unaudited.
    """
    filters = query.to_filter()
    database = get_database(request)
    with database.transaction() as session:
        service.record_as(
            session, origin_of(request), AuditEvent.AUDIT_EXPORTED, detail=filters.describe()
        )

    def lines() -> Iterator[str]:
        # A session of its own, because the response is streamed after the route returns.
        with database.reader() as reader:
            yield from service.export_jsonl(reader, filters)

    return StreamingResponse(
        lines(),
        media_type=JSON_LINES,
        headers={"Content-Disposition": 'attachment; filename="llero-audit.jsonl"'},
    )


@router.get("/verify", dependencies=[requires(Permission.AUDIT_VERIFY)])
def verify_events(session: SessionDep, query: Annotated[VerifyQuery, Query()]) -> VerifyOut:
    """Check that no record from start to end was edited, deleted, inserted or reordered.

    NOTE: the check reads every record of the range in this request; a whole chain of a million
    records takes about ten seconds. `llero audit verify --jobs N` splits a long chain over
    several processes.
    """
    result = service.verify_chain(session, query.start, query.end)
    if result.broken is not None:
        log.warning(
            "audit:chain_broken",
            sequence=result.broken.sequence,
            reason=result.broken.reason.value,
        )
    return VerifyOut.of(result)


@router.post("/purge", dependencies=[requires(Permission.AUDIT_PURGE)])
def purge_events(request: Request, session: SessionDep, settings: SettingsDep) -> PurgeOut:
    """Remove the records older than LLERO_AUDIT_RETENTION_DAYS and record an audit:purged event.

    The retention comes from the settings only, so a stolen admin session cannot shorten it to
    erase recent evidence.
    """
    origin = origin_of(request)
    days = settings.audit_retention_days
    try:
        result = service.purge_older_than(session, days, actor=origin.actor, request=origin.request)
    except AuditChainError as error:
        log.warning("audit:purge_refused", reason=str(error))
        raise Refused(str(error)) from None
    log.info("audit:purged", removed=result.removed, first_sequence=result.first_sequence)
    return PurgeOut.of(result, days)
