"""Query parameters and response bodies of the audit routes.

An event in a response has the same fields as a line of the JSON lines export, so a client can
check a page against an export, or recompute a record hash, with one parser.
"""

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from llero.audit.context import ACTOR_ID_MAX, TARGET_ID_MAX, TARGET_KIND_MAX
from llero.audit.events import ActorKind, AuditEvent
from llero.audit.redaction import HASH_PREFIX
from llero.audit.service import MAX_PAGE_SIZE, AuditFilter, PurgeResult, VerifyResult
from llero.web.schemas import ResponseModel

# Sequence numbers are 64-bit integers on PostgreSQL.
SEQUENCE_MAX = 2**63 - 1
PAGE_SIZE_DEFAULT = 100
DETAIL_HASH_LENGTH = len(HASH_PREFIX) + 64


class AuditSearch(BaseModel):
    """The filters that the list and the export share. They arrive as text, so they are lax."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = Field(
        default=None, description="Only records at or after this time; needs a time zone."
    )
    until: AwareDatetime | None = Field(
        default=None, description="Only records before this time; needs a time zone."
    )
    event: list[AuditEvent] = Field(
        default_factory=list,
        max_length=len(AuditEvent),
        description="Only records of these events; repeat the parameter for several.",
    )
    actor_kind: ActorKind | None = None
    actor_id: Annotated[str, Field(min_length=1, max_length=ACTOR_ID_MAX)] | None = None
    target_kind: Annotated[str, Field(min_length=1, max_length=TARGET_KIND_MAX)] | None = None
    target_id: Annotated[str, Field(min_length=1, max_length=TARGET_ID_MAX)] | None = None
    detail_hash: (
        Annotated[
            str,
            Field(
                min_length=DETAIL_HASH_LENGTH,
                max_length=DETAIL_HASH_LENGTH,
                description="Only records whose detail contains this value of `llero audit hash`.",
            ),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _time_range_in_order(self) -> Self:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self

    def to_filter(self) -> AuditFilter:
        """Return the service filter; raises InvalidInput for a malformed detail hash."""
        return AuditFilter(
            since=self.since,
            until=self.until,
            events=tuple(self.event),
            actor_kind=self.actor_kind,
            actor_id=self.actor_id,
            target_kind=self.target_kind,
            target_id=self.target_id,
            detail_hash=self.detail_hash,
        )


class AuditPageQuery(AuditSearch):
    after: Annotated[int, Field(ge=0, le=SEQUENCE_MAX)] | None = Field(
        default=None, description="The next_cursor of the page before."
    )
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE_DEFAULT
    order: Literal["newest", "oldest"] = "newest"


class VerifyQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Annotated[int, Field(ge=1, le=SEQUENCE_MAX)] | None = Field(
        default=None, description="First sequence number to check; default the first stored."
    )
    end: Annotated[int, Field(ge=1, le=SEQUENCE_MAX)] | None = Field(
        default=None, description="Last sequence number to check; default the last record."
    )

    @model_validator(mode="after")
    def _range_in_order(self) -> Self:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("start must not be after end")
        return self


class ActorOut(ResponseModel):
    kind: str
    id: str | None


class TargetOut(ResponseModel):
    kind: str
    id: str


class AuditEventOut(ResponseModel):
    sequence: int
    occurred_at: str
    event: str
    actor: ActorOut
    target: TargetOut | None
    client_address: str | None
    request_id: str | None
    user_agent: str | None
    detail: dict[str, Any]
    previous_hash: str
    record_hash: str


class AuditPageOut(ResponseModel):
    events: list[AuditEventOut]
    # Pass as ``after`` for the next page; null on the last page.
    next_cursor: int | None


class ChainBreakOut(ResponseModel):
    # Null when the chain head itself fails its check.
    sequence: int | None
    reason: str
    message: str


class VerifyOut(ResponseModel):
    ok: bool
    checked: int
    first_sequence: int | None
    last_sequence: int | None
    broken: ChainBreakOut | None

    @classmethod
    def of(cls, result: VerifyResult) -> "VerifyOut":
        broken = result.broken
        return cls(
            ok=result.ok,
            checked=result.checked,
            first_sequence=result.first_sequence,
            last_sequence=result.last_sequence,
            broken=None
            if broken is None
            else ChainBreakOut(
                sequence=broken.sequence, reason=broken.reason.value, message=broken.message
            ),
        )


class PurgeOut(ResponseModel):
    removed: int
    first_sequence: int
    cutoff: datetime
    retention_days: int
    event_sequence: int

    @classmethod
    def of(cls, result: PurgeResult, retention_days: int) -> "PurgeOut":
        return cls(
            removed=result.removed,
            first_sequence=result.first_sequence,
            cutoff=result.cutoff,
            retention_days=retention_days,
            event_sequence=result.event_sequence,
        )
