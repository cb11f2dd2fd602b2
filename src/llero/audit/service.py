"""Record audit events into the hash chain, and verify, query, export and purge it.

``record`` is the one way to write an audit event. It runs in the caller's transaction, so the
event and the action it describes are committed together or not at all. When the record cannot
be written (the table is gone, a constraint fails, the chain head was tampered with, or no
audit key is loaded), the exception rolls the action back. Appends are serialised on the chain
head row (see ``llero.audit.head``), so concurrent transactions extend one chain and never fork
it.
"""

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from llero.audit.chain import HASHED_FIELDS, AuditChainError, ChainHasher, format_time
from llero.audit.context import Actor, Origin, RequestContext, Target
from llero.audit.events import ActorKind, AuditEvent
from llero.audit.head import ChainHead, events_table, lock_head, move_head
from llero.audit.keys import keys_of
from llero.audit.models import AuditRecord
from llero.audit.redaction import HASH_PREFIX, canonical_json, encode_detail
from llero.audit.verification import (
    BreakReason,
    ChainBreak,
    VerifyResult,
    verify_chain,
)
from llero.errors import InvalidInput, Violation
from llero.storage.base import utc_now
from llero.storage.prepared import PreparedStatement

__all__ = [
    "AuditFilter",
    "AuditPage",
    "BreakReason",
    "ChainBreak",
    "PurgeResult",
    "VerifyResult",
    "export_jsonl",
    "purge_older_than",
    "query",
    "record",
    "record_as",
    "record_as_dict",
    "verify_chain",
]

DEFAULT_RETENTION_DAYS = 365
MAX_PAGE_SIZE = 1000
EXPORT_BATCH_SIZE = 1000

_INSERT = PreparedStatement(events_table.insert(), [*HASHED_FIELDS, "record_hash"])
_DETAIL_HASH = re.compile(re.escape(HASH_PREFIX) + "[0-9a-f]{64}")


def record(
    session: Session,
    event: AuditEvent,
    *,
    actor: Actor,
    target: Target | None,
    request: RequestContext | None,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Append one event to the chain in the caller's transaction; return its sequence number.

    ``request`` is None only for work no HTTP request started (the CLI, scheduled jobs).
    Secrets in ``detail`` are replaced by their keyed hash (see ``llero.audit.redaction``).
    Raises InvalidAuditDetail for a detail that is too large or not JSON, AuditKeysMissing,
    AuditChainError, or the database's error. The caller must let each of them roll the action
    back.
    """
    event = AuditEvent(event)
    keys = keys_of(session)
    detail_text = encode_detail(detail, keys)
    hasher = ChainHasher.of(keys)

    head = lock_head(session, hasher)
    sequence = head.last_sequence + 1
    context = request or RequestContext()
    values: dict[str, Any] = {
        "sequence": sequence,
        # Taken after the lock, so times rise with sequence numbers unless the clock steps back.
        "occurred_at": utc_now(),
        "event": event.value,
        "actor_kind": actor.kind.value,
        "actor_id": actor.id,
        "target_kind": target.kind if target else None,
        "target_id": target.id if target else None,
        "client_address": context.client_address,
        "request_id": context.request_id,
        "user_agent": context.user_agent,
        "detail": detail_text,
        "previous_hash": head.last_hash,
    }
    values["record_hash"] = hasher.record_hash([values[name] for name in HASHED_FIELDS])

    _INSERT.execute(session.connection(), values)
    move_head(
        session,
        hasher,
        first_sequence=head.first_sequence,
        anchor_hash=head.anchor_hash,
        last_sequence=sequence,
        last_hash=values["record_hash"],
    )
    return sequence


def record_as(
    session: Session,
    origin: Origin,
    event: AuditEvent,
    target: Target | None = None,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """``record`` for a service that was handed its caller's ``Origin``."""
    return record(
        session, event, actor=origin.actor, target=target, request=origin.request, detail=detail
    )


@dataclass(frozen=True)
class AuditFilter:
    """The conditions that ``query`` and ``export_jsonl`` select by; all that are set must hold.

    ``until`` is exclusive. ``detail_hash`` is a value from ``audit_hash`` and selects the
    records whose detail contains it.
    """

    since: datetime | None = None
    until: datetime | None = None
    events: tuple[AuditEvent, ...] = ()
    actor_kind: ActorKind | None = None
    actor_id: str | None = None
    target_kind: str | None = None
    target_id: str | None = None
    detail_hash: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(
                    f"{name} needs a time zone",
                    details=[Violation(name, "must include a time zone, such as Z or +00:00")],
                )
        if self.detail_hash is not None and not _DETAIL_HASH.fullmatch(self.detail_hash):
            raise InvalidInput(
                "detail_hash is not an audit hash",
                details=[Violation("detail_hash", f"must be {HASH_PREFIX} and 64 hex digits")],
            )

    def describe(self) -> dict[str, Any]:
        """Return the filter as an audit detail, for the record of an export."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "events": [event.value for event in self.events],
            "actor_kind": self.actor_kind.value if self.actor_kind else None,
            "actor_id": self.actor_id,
            "target_kind": self.target_kind,
            "target_id": self.target_id,
            # Only whether a hash was searched for: the hash itself would make this record match
            # the search it describes.
            "by_detail_hash": self.detail_hash is not None,
        }

    def apply(self, statement: Select[Any]) -> Select[Any]:
        columns = events_table.c
        if self.since is not None:
            statement = statement.where(columns.occurred_at >= self.since)
        if self.until is not None:
            statement = statement.where(columns.occurred_at < self.until)
        if self.events:
            statement = statement.where(columns.event.in_([event.value for event in self.events]))
        if self.actor_kind is not None:
            statement = statement.where(columns.actor_kind == self.actor_kind.value)
        if self.actor_id is not None:
            statement = statement.where(columns.actor_id == self.actor_id)
        if self.target_kind is not None:
            statement = statement.where(columns.target_kind == self.target_kind)
        if self.target_id is not None:
            statement = statement.where(columns.target_id == self.target_id)
        if self.detail_hash is not None:
            # The pattern checked above allows only hex digits, letters and a colon, so the
            # value needs no LIKE escaping.
            statement = statement.where(columns.detail.contains(self.detail_hash))
        return statement


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    # Pass as ``after`` to get the next page; None on the last page.
    next_cursor: int | None


def query(
    session: Session,
    filters: AuditFilter | None = None,
    *,
    after: int | None = None,
    limit: int = 100,
    newest_first: bool = True,
) -> AuditPage:
    """Return one page of matching records, newest first unless ``newest_first`` is False.

    ``after`` is the ``next_cursor`` of the page before; pages are cut by sequence number, so a
    record appended meanwhile never shifts a later page.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"limit must be between 1 and {MAX_PAGE_SIZE}",
            details=[Violation("limit", f"must be between 1 and {MAX_PAGE_SIZE}")],
        )
    statement = (filters or AuditFilter()).apply(select(AuditRecord))
    sequence = AuditRecord.sequence
    if newest_first:
        statement = statement.order_by(sequence.desc())
        if after is not None:
            statement = statement.where(sequence < after)
    else:
        statement = statement.order_by(sequence)
        if after is not None:
            statement = statement.where(sequence > after)
    records = list(session.scalars(statement.limit(limit + 1)))
    if len(records) > limit:
        return AuditPage(records[:limit], records[limit - 1].sequence)
    return AuditPage(records, None)


def record_as_dict(row: Any) -> dict[str, Any]:
    """Return one record in the shape of an export line; ``row`` is a record or a result row."""
    return {
        "sequence": row.sequence,
        "occurred_at": format_time(row.occurred_at),
        "event": row.event,
        "actor": {"kind": row.actor_kind, "id": row.actor_id},
        "target": None
        if row.target_kind is None
        else {"kind": row.target_kind, "id": row.target_id},
        "client_address": row.client_address,
        "request_id": row.request_id,
        "user_agent": row.user_agent,
        "detail": json.loads(row.detail),
        "previous_hash": row.previous_hash,
        "record_hash": row.record_hash,
    }


def export_jsonl(
    session: Session, filters: AuditFilter | None = None, *, batch_size: int = EXPORT_BATCH_SIZE
) -> Iterator[str]:
    """Yield the matching records oldest first, one JSON line each, ending in a newline.

    Records are read in batches of plain rows, so an export of any length keeps no ORM objects
    in the session and uses memory for one batch.
    """
    statement = (filters or AuditFilter()).apply(select(events_table))
    statement = statement.order_by(events_table.c.sequence).limit(batch_size)
    after = 0
    while True:
        rows = session.execute(statement.where(events_table.c.sequence > after)).all()
        for row in rows:
            yield canonical_json(record_as_dict(row)) + "\n"
        if len(rows) < batch_size:
            return
        after = rows[-1].sequence


@dataclass(frozen=True)
class PurgeResult:
    removed: int
    # The first record still stored; verification starts there.
    first_sequence: int
    cutoff: datetime
    # The audit:purged event that records this purge.
    event_sequence: int


def purge_older_than(
    session: Session,
    days: int = DEFAULT_RETENTION_DAYS,
    *,
    actor: Actor,
    request: RequestContext | None = None,
    now: datetime | None = None,
) -> PurgeResult:
    """Delete the records older than ``days`` days and record an ``audit:purged`` event.

    Only a prefix of the chain is removed: the records before the first one that is not older
    than the cutoff. The chain head keeps the hash of the last removed record as the anchor
    that the first remaining record must link to, so the rest still verifies. The records to be
    removed are verified first, and nothing is removed when they fail, because a purge would
    destroy the evidence.
    """
    if days < 1:
        raise InvalidInput(
            "days must be at least 1", details=[Violation("days", "must be at least 1")]
        )
    hasher = ChainHasher(keys_of(session))
    head = lock_head(session, hasher)
    cutoff = (now or utc_now()) - timedelta(days=days)
    boundary = _first_kept(session, head, cutoff)

    removed = 0
    if boundary > head.first_sequence:
        removed = _remove_before(session, hasher, head, boundary)
    sequence = record(
        session,
        AuditEvent.AUDIT_PURGED,
        actor=actor,
        target=None,
        request=request,
        detail={
            "cutoff": format_time(cutoff),
            "days": days,
            "first_sequence": boundary,
            "removed": removed,
        },
    )
    return PurgeResult(removed, boundary, cutoff, sequence)


def _first_kept(session: Session, head: ChainHead, cutoff: datetime) -> int:
    first_new = session.scalar(
        select(func.min(events_table.c.sequence)).where(events_table.c.occurred_at >= cutoff)
    )
    return head.last_sequence + 1 if first_new is None else max(first_new, head.first_sequence)


def _remove_before(session: Session, hasher: ChainHasher, head: ChainHead, boundary: int) -> int:
    # The first kept record is checked too, so its link to the new anchor is known to hold.
    checked = verify_chain(session, head.first_sequence, boundary)
    if checked.broken is not None:
        raise AuditChainError(
            f"refusing to purge a broken chain: {checked.broken.message}; "
            "run `llero audit verify` and keep the records as evidence"
        )
    anchor = session.scalar(
        select(events_table.c.record_hash).where(events_table.c.sequence == boundary - 1)
    )
    if anchor is None:
        raise AuditChainError(f"record {boundary - 1} is missing; nothing was purged")
    session.execute(events_table.delete().where(events_table.c.sequence < boundary))
    move_head(
        session,
        hasher,
        first_sequence=boundary,
        anchor_hash=anchor,
        last_sequence=head.last_sequence,
        last_hash=head.last_hash,
    )
    # The verified range has no gaps, so this is exactly the number of rows deleted.
    return boundary - head.first_sequence
