"""KEK rotation: re-wrap every data key under the current KEK, then retire the KEKs left unused.

The steps, each safe to repeat:

1. ``keyring.add_kek`` makes a new current KEK. Running processes pick it up within
   REFRESH_INTERVAL_SECONDS, and readers accept every KEK that is not retired.
2. ``rotate_data_keys`` re-wraps, in batches, each data key that another KEK wraps. Only the
   wrapped key in the envelope changes; no value is decrypted or encrypted again. Each batch is
   one short transaction that also moves a cursor, so after a crash the next run resumes after
   the last committed batch, and the server keeps reading and writing meanwhile.
3. ``retire_kek`` checks that no record still names the old KEK, then retires it.

A batch updates a row only if it still names the KEK the batch read, so a row destroyed or
re-wrapped by someone else meanwhile is left as it is.
"""

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import Column, Table, Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from llero.errors import Refused
from llero.logs import get_logger
from llero.storage.base import Base, utc_now
from llero.storage.db import Database
from llero.vault.envelope import rewrap
from llero.vault.keyring import Kek, Keyring, mark_retired, read_manifest
from llero.vault.models import KekRotation, SecretKey, SecretVersion

DEFAULT_BATCH_SIZE = 500

logger = get_logger(__name__)


@dataclass(frozen=True)
class EncryptedColumn:
    """A column of envelopes, with the table's integer primary key and the column of KEK ids."""

    table: Table
    id: Column[int]
    envelope: Column[bytes]
    kek_id: Column[str]


def _encrypted_column(table: Table) -> EncryptedColumn:
    return EncryptedColumn(table, table.c.id, table.c.envelope, table.c.kek_id)


# Every table that stores envelopes. A domain that adds one lists it here, or rotation leaves its
# data keys under the old KEK and retire_kek refuses to retire that KEK.
ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    _encrypted_column(Base.metadata.tables[SecretVersion.__tablename__]),
    _encrypted_column(Base.metadata.tables[SecretKey.__tablename__]),
)


@dataclass(frozen=True)
class RotationResult:
    target_kek_id: str
    rewrapped: int
    batches: int
    finished: bool


def rotate_data_keys(
    database: Database,
    keyring: Keyring,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int | None = None,
) -> RotationResult:
    """Re-wrap every data key not wrapped by the current KEK, ``batch_size`` rows at a time.

    Stops after ``max_batches`` batches when given; a later call resumes there. Raises
    CiphertextInvalid when an envelope cannot be unwrapped (its KEK is missing or the bytes were
    changed); the batches before it stay committed.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    target = keyring.current
    rewrapped = batches = 0
    finished = True
    for column in ENCRYPTED_COLUMNS:
        _restart_if_finished(database, column, target)
        while max_batches is None or batches < max_batches:
            count = _rotate_batch(database, keyring, column, target, batch_size)
            if count == 0:
                break
            rewrapped += count
            batches += 1
        else:
            finished = False
            break
    logger.info(
        "vault_rotation_stopped" if not finished else "vault_rotation_finished",
        target_kek_id=target.id,
        rewrapped=rewrapped,
        batches=batches,
    )
    return RotationResult(target.id, rewrapped, batches, finished)


def kek_ids_in_use(session: Session) -> set[str]:
    """Return the ids of every KEK that wraps at least one stored envelope."""
    found: set[str] = set()
    for column in ENCRYPTED_COLUMNS:
        found.update(
            kek_id
            for kek_id in session.scalars(select(column.kek_id).distinct())
            if kek_id is not None
        )
    return found


def records_needing(database: Database, kek_id: str) -> int:
    """Return how many stored envelopes a KEK still wraps, across every encrypted column."""
    with database.reader() as session:
        return sum(
            session.scalar(
                select(func.count()).select_from(column.table).where(column.kek_id == kek_id)
            )
            or 0
            for column in ENCRYPTED_COLUMNS
        )


def retire_kek(
    database: Database, keys_dir: Path, kek_id: str, master_key: SecretStr | None = None
) -> None:
    """Retire ``kek_id`` once no stored envelope needs it.

    Raises Refused while records still need it (run ``rotate_data_keys`` again) or when it is the
    current KEK, and NotFound when the manifest does not list it.
    """
    # NOTE: a process that has not yet seen the new current KEK can still seal a value under this
    # KEK between the count and the retirement, and that value becomes unreadable. Processes
    # reload within REFRESH_INTERVAL_SECONDS of add_kek, so retire well after that.
    if read_manifest(keys_dir, master_key).current == kek_id:
        raise Refused(f"KEK {kek_id} is the current KEK; add a new KEK before retiring it")
    remaining = records_needing(database, kek_id)
    if remaining:
        raise Refused(
            f"KEK {kek_id} still wraps {remaining} data keys; run the rotation again, then retire"
        )
    mark_retired(keys_dir, kek_id)


def _rotate_batch(
    database: Database, keyring: Keyring, column: EncryptedColumn, target: Kek, batch_size: int
) -> int:
    """Re-wrap the next batch after the cursor and move the cursor; return the rows read."""
    with database.transaction() as session:
        progress = _progress(session, column, target)
        rows = session.execute(
            select(column.id, column.envelope, column.kek_id)
            .where(
                column.id > progress.cursor,
                column.kek_id.is_not(None),
                column.kek_id != target.id,
            )
            .order_by(column.id)
            .limit(batch_size)
        ).all()
        if not rows:
            progress.finished_at = utc_now()
            return 0
        changes = [
            _rewrapped(keyring, row_id, envelope, kek_id, target)
            for row_id, envelope, kek_id in rows
        ]
        session.execute(_compare_and_set(column), changes)
        progress.cursor = rows[-1].id
        progress.rewrapped += len(rows)
        progress.updated_at = utc_now()
    logger.debug("vault_rotation_batch", table=column.table.name, cursor=rows[-1].id)
    return len(rows)


def _compare_and_set(column: EncryptedColumn) -> Update:
    return (
        update(column.table)
        .where(column.id == bindparam("row_id"), column.kek_id == bindparam("old_kek_id"))
        .values({column.envelope: bindparam("new_envelope"), column.kek_id: bindparam("new_kek")})
    )


def _rewrapped(
    keyring: Keyring, row_id: int, envelope: bytes, kek_id: str, target: Kek
) -> dict[str, object]:
    return {
        "row_id": row_id,
        "old_kek_id": kek_id,
        "new_envelope": rewrap(keyring, envelope, target),
        "new_kek": target.id,
    }


def _progress(session: Session, column: EncryptedColumn, target: Kek) -> KekRotation:
    """Return the rotation's progress row, locked against a second rotation where the database
    supports it (PostgreSQL; SQLite lets one writer in at a time anyway)."""
    progress = session.scalars(
        select(KekRotation)
        .where(KekRotation.table_name == column.table.name, KekRotation.target_kek_id == target.id)
        .with_for_update()
    ).one_or_none()
    if progress is None:
        progress = KekRotation(table_name=column.table.name, target_kek_id=target.id, cursor=0)
        session.add(progress)
        session.flush()
    return progress


def _restart_if_finished(database: Database, column: EncryptedColumn, target: Kek) -> None:
    """Start a finished rotation over, so a rerun finds rows sealed under an old KEK since."""
    with database.transaction() as session:
        progress = _progress(session, column, target)
        if progress.finished_at is not None:
            progress.cursor = 0
            progress.finished_at = None
            progress.updated_at = utc_now()
