"""KEK administration as `llero keys` runs it: status, rotation and retirement, each audited.

Each action records its audit event before it changes anything, and stops when the record cannot
be written. Rotation records ``kek:rotation_started`` (with ``kek:added`` when it makes the new
KEK) before the first batch, and ``kek:rotation_finished`` once every record is re-wrapped.

A rotation is unfinished while any stored envelope is wrapped by a KEK other than the current
one. Starting a rotation then resumes it under the current KEK instead of adding another, so a
run that crashed is finished by running it again.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.errors import NotFound, Refused
from llero.logs import get_logger
from llero.storage.db import Database
from llero.vault.keyring import REFRESH_INTERVAL_SECONDS, KekRecord, Keyring, Manifest
from llero.vault.rotation import (
    DEFAULT_BATCH_SIZE,
    RotationResult,
    envelopes_by_kek,
    records_needing,
    retire_kek,
    rotate_data_keys,
)

# How long after a KEK became current an older one may be retired. A running server switches to
# the new KEK within REFRESH_INTERVAL_SECONDS of seeing it, and until then may still seal new
# values under the old KEK.
RETIRE_GRACE_SECONDS = 3 * REFRESH_INTERVAL_SECONDS

logger = get_logger(__name__)


@dataclass(frozen=True)
class KekState:
    """One KEK: its manifest entry, if the manifest lists it, and how many records it wraps."""

    id: str
    record: KekRecord | None
    current: bool
    records: int

    @property
    def state(self) -> str:
        if self.current:
            return "current"
        if self.record is None:
            return "unknown"
        return "retired" if self.record.retired_at is not None else "active"


@dataclass(frozen=True)
class KekStatus:
    """Every KEK, and per encrypted column (as ``envelopes_by_kek`` names it) the records each
    KEK wraps."""

    current: str
    keks: tuple[KekState, ...]
    columns: dict[str, dict[str, int]]

    @property
    def pending(self) -> int:
        """Return how many records a KEK other than the current one wraps."""
        return sum(kek.records for kek in self.keks if not kek.current)


@dataclass(frozen=True)
class RotationStart:
    """The KEK a rotation re-wraps to, whether this run added it, and the records left."""

    target: KekRecord
    added: bool
    pending: int


def read_status(database: Database, keyring: Keyring, origin: Origin) -> KekStatus:
    """Record ``kek:status_viewed``, then return the status of every KEK."""
    with database.transaction() as session:
        record_as(session, origin, AuditEvent.KEK_STATUS_VIEWED)
    return kek_status(database, keyring.manifest())


def kek_status(database: Database, manifest: Manifest) -> KekStatus:
    """Return the status of every KEK that the manifest lists or a stored envelope names."""
    columns = envelopes_by_kek(database)
    totals: dict[str, int] = {}
    for counts in columns.values():
        for kek_id, count in counts.items():
            totals[kek_id] = totals.get(kek_id, 0) + count
    listed = [
        KekState(record.id, record, record.id == manifest.current, totals.get(record.id, 0))
        for record in manifest.keys
    ]
    unknown = [
        KekState(kek_id, None, current=False, records=count)
        for kek_id, count in sorted(totals.items())
        if manifest.record(kek_id) is None
    ]
    return KekStatus(manifest.current, (*listed, *unknown), columns)


def start_rotation(database: Database, keyring: Keyring, origin: Origin) -> RotationStart:
    """Resume the unfinished rotation, or add a new current KEK and start one.

    Raises Refused when some records are wrapped by a KEK that is not loaded (retired, or missing
    from the manifest), because those cannot be re-wrapped. The new KEK is protected as the
    keyring's KEKs are (see ``Keyring.add_kek``).

    NOTE: ``kek:added`` is written before the manifest lists the new KEK, but committed after.
    A commit that fails in between leaves the KEK added without its record, and the command
    fails with the commit's error.
    """
    keyring.current  # noqa: B018 - raises VaultSealed before anything is read or changed
    manifest = keyring.manifest()
    status = kek_status(database, manifest)
    _check_all_loaded(status, keyring)
    if status.pending:
        target = _record(manifest, manifest.current)
        _record_start(database, origin, target, status.pending, resumed=True)
        return RotationStart(target, added=False, pending=status.pending)

    previous = manifest.current
    records = sum(kek.records for kek in status.keks)
    with database.transaction() as session:

        def record_added(record: KekRecord) -> None:
            detail = {"version": record.version, "source": record.source.value}
            record_as(
                session,
                origin,
                AuditEvent.KEK_ADDED,
                Target.of("kek", record.id),
                {**detail, "previous_kek_id": previous},
            )
            _audit_start(session, origin, record, records, resumed=False)
            session.flush()

        target = keyring.add_kek(before_listing=record_added)
    return RotationStart(target, added=True, pending=records)


def run_rotation(
    database: Database,
    keyring: Keyring,
    origin: Origin,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[str, int], None] | None = None,
) -> RotationResult:
    """Re-wrap every record under the current KEK, then record ``kek:rotation_finished``.

    Each batch commits on its own, so an error leaves the batches before it done, and the next
    ``start_rotation`` resumes after them.
    """
    result = rotate_data_keys(database, keyring, batch_size=batch_size, on_batch=on_batch)
    with database.transaction() as session:
        record_as(
            session,
            origin,
            AuditEvent.KEK_ROTATION_FINISHED,
            Target.of("kek", result.target_kek_id),
            {"rewrapped": result.rewrapped, "batches": result.batches},
        )
    return result


def retire(
    database: Database, keyring: Keyring, keys_dir: Path, origin: Origin, kek_id: str
) -> KekRecord:
    """Retire ``kek_id`` once no record needs it, and record ``kek:retired``.

    Raises NotFound for a KEK the manifest does not list, and Refused when it is current or
    retired already, or while a record is still wrapped by it.
    """
    manifest = keyring.manifest()
    record = manifest.record(kek_id)
    if record is None:
        raise NotFound(f"KEK {kek_id} not found; `llero keys status` lists the KEKs")
    if record.retired_at is not None:
        raise Refused(f"KEK {kek_id} was retired already, at {_iso(record.retired_at)}")
    if kek_id == manifest.current:
        raise Refused(
            f"KEK {kek_id} is the current KEK; run `llero keys rotate` to replace it first"
        )
    _wait_for_reloads(_record(manifest, manifest.current))
    _check_unused(database, kek_id)

    with database.transaction() as session:
        detail = {"version": record.version, "source": record.source.value}
        record_as(session, origin, AuditEvent.KEK_RETIRED, Target.of("kek", kek_id), detail)
        session.flush()
        # Counts again under its own checks, in case a late record appeared meanwhile; a
        # refusal rolls the audit record back with it.
        retire_kek(database, keys_dir, kek_id)
    return record


def retire_unused(
    database: Database, keyring: Keyring, keys_dir: Path, origin: Origin
) -> list[KekRecord]:
    """Retire every KEK but the current one that no record needs; return the KEKs retired.

    First waits out RETIRE_GRACE_SECONDS, then resumes the rotation if a server sealed records
    under an older KEK meanwhile.
    """
    manifest = keyring.manifest()
    _wait_for_reloads(_record(manifest, manifest.current))
    if kek_status(database, manifest).pending:
        start_rotation(database, keyring, origin)
        run_rotation(database, keyring, origin)

    retired = []
    for record in manifest.keys:
        if record.id == manifest.current or record.retired_at is not None:
            continue
        if records_needing(database, record.id) == 0:
            retired.append(retire(database, keyring, keys_dir, origin, record.id))
    return retired


def _record_start(
    database: Database, origin: Origin, target: KekRecord, pending: int, *, resumed: bool
) -> None:
    with database.transaction() as session:
        _audit_start(session, origin, target, pending, resumed=resumed)


def _audit_start(
    session: Session, origin: Origin, target: KekRecord, pending: int, *, resumed: bool
) -> None:
    record_as(
        session,
        origin,
        AuditEvent.KEK_ROTATION_STARTED,
        Target.of("kek", target.id),
        {"pending": pending, "resumed": resumed},
    )


def _check_all_loaded(status: KekStatus, keyring: Keyring) -> None:
    for kek in status.keks:
        if kek.records and keyring.kek(kek.id) is None:
            raise Refused(
                f"{kek.records} records are wrapped by KEK {kek.id}, which is not loaded "
                f"({kek.state}); restore its key file before rotating"
            )


def _check_unused(database: Database, kek_id: str) -> None:
    remaining = records_needing(database, kek_id)
    if remaining:
        raise Refused(
            f"KEK {kek_id} still wraps {remaining} records; run `llero keys rotate` to re-wrap "
            "them, then retire it"
        )


def _wait_for_reloads(current: KekRecord) -> None:
    """Sleep until RETIRE_GRACE_SECONDS have passed since ``current`` was added."""
    elapsed = (datetime.now(UTC) - current.created_at).total_seconds()
    if elapsed < RETIRE_GRACE_SECONDS:
        logger.info("vault_retire_waiting", seconds=RETIRE_GRACE_SECONDS - elapsed)
        time.sleep(RETIRE_GRACE_SECONDS - elapsed)


def _record(manifest: Manifest, kek_id: str) -> KekRecord:
    record = manifest.record(kek_id)
    if record is None:
        raise ValueError("the manifest's current KEK is always one of its records")
    return record


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
