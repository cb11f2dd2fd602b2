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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import (
    Column,
    ColumnElement,
    LargeBinary,
    Table,
    Update,
    bindparam,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from llero.errors import Refused
from llero.logs import get_logger
from llero.storage.base import AtRest, utc_now
from llero.storage.db import Database
from llero.storage.registry import metadata
from llero.vault.envelope import rewrap
from llero.vault.keyring import KEK_ID_BYTES, Kek, Keyring, mark_retired, read_manifest
from llero.vault.models import KekRotation

DEFAULT_BATCH_SIZE = 500

logger = get_logger(__name__)


@dataclass(frozen=True)
class EncryptedColumn:
    """A column of envelopes in a table whose integer primary key is ``id``.

    ``kek_id`` is a column holding a copy of each envelope's KEK id, where the table has one
    (secret_versions, which may hold many rows, finds old envelopes with an index). Elsewhere the
    KEK id is read from the envelope's own bytes in SQL, which needs no index but reads every row.
    """

    table: Table
    id: Column[int]
    envelope: Column[bytes]
    kek_id: Column[str] | None

    @property
    def name(self) -> str:
        """The name under which kek_rotations records this column's progress."""
        # A table with a KEK id column keeps the plain table name it was recorded under first.
        if self.kek_id is not None:
            return self.table.name
        return f"{self.table.name}.{self.envelope.name}"

    def wrapped_by(self, kek_id: str) -> ColumnElement[bool]:
        if self.kek_id is not None:
            return self.kek_id == kek_id
        return self._stored_kek_id() == literal(bytes.fromhex(kek_id), LargeBinary)

    def wrapped_by_another(self, kek_id: str) -> ColumnElement[bool]:
        if self.kek_id is not None:
            return self.kek_id.is_not(None) & (self.kek_id != kek_id)
        target = literal(bytes.fromhex(kek_id), LargeBinary)
        return self.envelope.is_not(None) & (self._stored_kek_id() != target)

    def kek_ids(self) -> ColumnElement[Any]:
        """Return the SQL expression of each row's KEK id (text or envelope bytes)."""
        return self.kek_id if self.kek_id is not None else self._stored_kek_id()

    def _stored_kek_id(self) -> ColumnElement[bytes]:
        # Bytes 1 to 8 of a format 1 envelope (see envelope.py); SQL counts from 1.
        return func.substr(self.envelope, 2, KEK_ID_BYTES, type_=LargeBinary)


def _encrypted_columns() -> tuple[EncryptedColumn, ...]:
    """Return every column whose data class says it stores envelopes, in a stable order."""
    found = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if column.info.get("at_rest") is not AtRest.ENVELOPE:
                continue
            kek_column = column.info.get("kek_id_column")
            kek_id = None if kek_column is None else table.c[kek_column]
            found.append(EncryptedColumn(table, table.c.id, column, kek_id))
    # Secret values first: they are what an operator waits for, and the sealed fields after.
    return tuple(sorted(found, key=lambda column: column.table.name != "secret_versions"))


# Every column that stores envelopes: the secrets' values and the sealed fields of other tables.
# A column is found by its ``at_rest`` mark, so rotation re-wraps every envelope that a model
# declares, and retire_kek refuses while any of them still needs the old KEK.
ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = _encrypted_columns()


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
    on_batch: Callable[[str, int], None] | None = None,
) -> RotationResult:
    """Re-wrap every data key not wrapped by the current KEK, ``batch_size`` rows at a time.

    ``on_batch`` is called after each committed batch with the column's name (as in
    ``envelopes_by_kek``) and the rows the batch re-wrapped, to report progress.
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
            if on_batch is not None:
                on_batch(column.name, count)
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
            _kek_id_text(kek_id)
            for kek_id in session.scalars(select(column.kek_ids()).distinct())
            if kek_id is not None
        )
    return found


def records_needing(database: Database, kek_id: str) -> int:
    """Return how many stored envelopes a KEK still wraps, across every encrypted column."""
    with database.reader() as session:
        return sum(
            session.scalar(
                select(func.count()).select_from(column.table).where(column.wrapped_by(kek_id))
            )
            or 0
            for column in ENCRYPTED_COLUMNS
        )


def envelopes_by_kek(database: Database) -> dict[str, dict[str, int]]:
    """Return, for each encrypted column by name, how many envelopes each KEK id wraps."""
    usage: dict[str, dict[str, int]] = {}
    with database.reader() as session:
        for column in ENCRYPTED_COLUMNS:
            kek_ids = column.kek_ids()
            rows = session.execute(
                select(kek_ids, func.count()).where(column.envelope.is_not(None)).group_by(kek_ids)
            ).all()
            usage[column.name] = {_kek_id_text(kek_id): count for kek_id, count in rows}
    return usage


def _kek_id_text(value: object) -> str:
    return bytes(value).hex() if isinstance(value, bytes | memoryview) else str(value)


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
            select(column.id, column.envelope, column.kek_ids())
            .where(column.id > progress.cursor, column.wrapped_by_another(target.id))
            .order_by(column.id)
            .limit(batch_size)
        ).all()
        if not rows:
            progress.finished_at = utc_now()
            return 0
        changes = [
            _rewrapped(keyring, column, (row_id, envelope, kek_id), target)
            for row_id, envelope, kek_id in rows
        ]
        session.execute(_compare_and_set(column), changes)
        progress.cursor = rows[-1][0]
        progress.rewrapped += len(rows)
        progress.updated_at = utc_now()
    logger.debug("vault_rotation_batch", column=column.name, cursor=rows[-1][0])
    return len(rows)


def _compare_and_set(column: EncryptedColumn) -> Update:
    """Return an UPDATE that replaces an envelope only if the row still holds the one read."""
    if column.kek_id is None:
        return (
            update(column.table)
            .where(column.id == bindparam("row_id"), column.envelope == bindparam("old_envelope"))
            .values({column.envelope: bindparam("new_envelope")})
        )
    return (
        update(column.table)
        .where(column.id == bindparam("row_id"), column.kek_id == bindparam("old_kek_id"))
        .values({column.envelope: bindparam("new_envelope"), column.kek_id: bindparam("new_kek")})
    )


def _rewrapped(
    keyring: Keyring,
    column: EncryptedColumn,
    row: tuple[int, bytes, object],
    target: Kek,
) -> dict[str, object]:
    row_id, envelope, kek_id = row
    new_envelope = rewrap(keyring, envelope, target)
    if column.kek_id is None:
        return {"row_id": row_id, "old_envelope": envelope, "new_envelope": new_envelope}
    return {
        "row_id": row_id,
        "old_kek_id": kek_id,
        "new_envelope": new_envelope,
        "new_kek": target.id,
    }


def _progress(session: Session, column: EncryptedColumn, target: Kek) -> KekRotation:
    """Return the rotation's progress row, locked against a second rotation where the database
    supports it (PostgreSQL; SQLite lets one writer in at a time anyway)."""
    progress = session.scalars(
        select(KekRotation)
        .where(KekRotation.table_name == column.name, KekRotation.target_kek_id == target.id)
        .with_for_update()
    ).one_or_none()
    if progress is None:
        progress = KekRotation(table_name=column.name, target_kek_id=target.id, cursor=0)
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
