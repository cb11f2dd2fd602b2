"""Walk the chain and find the first record that was edited, deleted, inserted or reordered.

Each record must have the next sequence number, link to the record before it, and hash to its
stored ``record_hash``. When one does not, a second look distinguishes the kinds of tampering:

- a gap in the sequence numbers is a deleted record;
- a record that links to another stored record, not to its predecessor, was moved (reordered);
- a record that fails its hash while another record links to its predecessor was inserted;
- anything else that fails is an edited record.

Records are read in batches by sequence number, so memory stays flat for any chain length. The
comparisons need not be constant-time: the verifier compares stored values with values it
computed, and no client can time it on chosen input.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import String, bindparam, func, select, type_coerce
from sqlalchemy.orm import Session

from llero.audit.chain import HASHED_FIELDS, ChainHasher
from llero.audit.head import ChainHead, events_table, read_head
from llero.audit.keys import keys_of
from llero.storage.prepared import PreparedStatement

DEFAULT_BATCH_SIZE = 10_000

# The time is read as stored, without the conversion to datetime, which would cost more than the
# hash on SQLite (format_time accepts the stored text). PostgreSQL returns a datetime either way.
_COLUMNS = tuple(
    type_coerce(events_table.c[name], String) if name == "occurred_at" else events_table.c[name]
    for name in (*HASHED_FIELDS, "record_hash")
)
_sequence = events_table.c.sequence
# Run through the driver, because building SQLAlchemy's result rows took about 15% more CPU
# time (a million records written by benchmarks/audit.py, SQLite, one machine).
_BATCH = PreparedStatement(
    select(*_COLUMNS)
    .where(_sequence >= bindparam("low"), _sequence <= bindparam("high"))
    .order_by(_sequence)
    .limit(bindparam("batch_size"))
)


class BreakReason(StrEnum):
    DELETED = "deleted"
    EDITED = "edited"
    HEAD_INVALID = "head_invalid"
    INSERTED = "inserted"
    REORDERED = "reordered"


@dataclass(frozen=True)
class ChainBreak:
    """The first record that fails, or None as ``sequence`` when the chain head itself fails."""

    sequence: int | None
    reason: BreakReason
    message: str


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    first_sequence: int | None
    last_sequence: int | None
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


class _Broken(Exception):
    def __init__(self, sequence: int | None, reason: BreakReason, message: str) -> None:
        super().__init__(message)
        self.found = ChainBreak(sequence, reason, message)


def verify_chain(
    session: Session,
    start: int | None = None,
    end: int | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> VerifyResult:
    """Check the records from ``start`` to ``end`` (both included; default the whole chain).

    A range that reaches before the first stored record starts at it, because purged records
    cannot be checked. A partial range trusts the stored hash of the record before ``start``.
    """
    hasher = ChainHasher(keys_of(session))
    head = read_head(session)
    try:
        head = _check_head(session, head, hasher)
        if head is None:
            return VerifyResult(0, None, None, None)
        low = head.first_sequence if start is None else max(start, head.first_sequence)
        high = head.last_sequence if end is None else min(end, head.last_sequence)
        if start is None or start < head.first_sequence:
            _reject_stray_before(session, head, start)
        checked = _walk(session, head, hasher, low, high, batch_size=batch_size)
        if end is None or end > head.last_sequence:
            _reject_stray_after(session, head)
    except _Broken as broken:
        return VerifyResult(0, None, None, broken.found)
    return VerifyResult(checked, low, high if checked else None, None)


def _check_head(session: Session, head: ChainHead | None, hasher: ChainHasher) -> ChainHead | None:
    if head is None:
        first = session.scalar(select(func.min(_sequence)))
        if first is not None:
            raise _Broken(
                None, BreakReason.HEAD_INVALID, "the chain head is missing but records exist"
            )
        return None
    if not head.is_authentic(hasher):
        raise _Broken(
            None,
            BreakReason.HEAD_INVALID,
            "the chain head fails its check: it was edited, or written under another key",
        )
    return head


def _reject_stray_before(session: Session, head: ChainHead, start: int | None) -> None:
    query = select(func.min(_sequence)).where(_sequence < head.first_sequence)
    if start is not None:
        query = query.where(_sequence >= start)
    stray = session.scalar(query)
    if stray is not None:
        raise _Broken(
            stray,
            BreakReason.INSERTED,
            f"record {stray} lies before the first record the chain head names "
            f"({head.first_sequence})",
        )


def _reject_stray_after(session: Session, head: ChainHead) -> None:
    stray = session.scalar(select(func.min(_sequence)).where(_sequence > head.last_sequence))
    if stray is not None:
        raise _Broken(
            stray,
            BreakReason.INSERTED,
            f"record {stray} lies after the last record the chain head names "
            f"({head.last_sequence})",
        )


def _hash_before(session: Session, head: ChainHead, low: int) -> str:
    if low == head.first_sequence:
        return head.anchor_hash
    found = session.scalar(select(events_table.c.record_hash).where(_sequence == low - 1))
    if found is None:
        raise _Broken(low - 1, BreakReason.DELETED, f"record {low - 1} is missing")
    return str(found)


def _walk(
    session: Session, head: ChainHead, hasher: ChainHasher, low: int, high: int, *, batch_size: int
) -> int:
    """Check records ``low`` to ``high`` in order; return how many were checked."""
    if low > high:
        return 0
    expected_sequence = low
    expected_previous = _hash_before(session, head, low)
    while expected_sequence <= high:
        rows = _BATCH.execute(
            session.connection(),
            {"low": expected_sequence, "high": high, "batch_size": batch_size},
        )
        if not rows:
            break
        for row in rows:
            if row[0] != expected_sequence:
                raise _Broken(
                    expected_sequence,
                    BreakReason.DELETED,
                    f"record {expected_sequence} is missing; the next stored record is {row[0]}",
                )
            if row[-2] != expected_previous or hasher.record_hash(row) != row[-1]:
                raise _diagnose(session, hasher, row, expected_previous)
            expected_previous = row[-1]
            expected_sequence += 1
    if expected_sequence <= high:
        raise _Broken(
            expected_sequence, BreakReason.DELETED, _missing_tail(expected_sequence, high)
        )
    if high == head.last_sequence and expected_previous != head.last_hash:
        raise _Broken(
            high, BreakReason.EDITED, f"record {high} is not the last record the chain head names"
        )
    return high - low + 1


def _missing_tail(first_missing: int, high: int) -> str:
    if first_missing == high:
        return f"record {first_missing} is missing"
    return f"records {first_missing} to {high} are missing"


def _diagnose(
    session: Session, hasher: ChainHasher, row: Sequence[Any], expected_previous: str
) -> _Broken:
    sequence, previous_hash, record_hash = row[0], row[-2], row[-1]
    others = _sequence != sequence
    if previous_hash != expected_previous:
        owner = session.scalar(
            select(_sequence).where(events_table.c.record_hash == previous_hash, others).limit(1)
        )
        if owner is not None:
            return _Broken(
                sequence,
                BreakReason.REORDERED,
                f"record {sequence} links to record {owner}, not to the record before it",
            )
    genuine = hasher.record_hash(row) == record_hash
    if not genuine:
        rival = session.scalar(
            select(_sequence)
            .where(events_table.c.previous_hash == expected_previous, others)
            .limit(1)
        )
        if rival is not None:
            return _Broken(
                sequence,
                BreakReason.INSERTED,
                f"record {sequence} fails its hash and record {rival} links to the record "
                "before it",
            )
        return _Broken(
            sequence, BreakReason.EDITED, f"record {sequence} does not match its record_hash"
        )
    return _Broken(
        sequence,
        BreakReason.EDITED,
        f"record {sequence} does not link to the record before it",
    )
