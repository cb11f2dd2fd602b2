"""Read, lock and move the chain head, the one row that names the ends of the chain.

Appends are serialised on this row, so two transactions can never both link a record to the
same predecessor and fork the chain. Locking is an UPDATE that changes nothing but takes the
lock: SQLite then holds its database-wide write lock and PostgreSQL a row lock on the head, each
until the caller's transaction ends. A concurrent append waits (on SQLite up to the engine's
busy_timeout) and then reads the head that the first one left.

NOTE: the head's MAC stops a writer without the key from moving the head, but not from putting
back an older copy of the whole head row after deleting the records written since. Only a head
hash kept outside the database (in a log shipped elsewhere, or an export) exposes that rollback.
"""

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from llero.audit.chain import GENESIS_HASH, AuditChainError, ChainHasher
from llero.audit.models import AuditChainHead, AuditRecord
from llero.storage.immediate import transaction_of
from llero.storage.prepared import PreparedStatement

HEAD_ID = 1

events_table = cast(Table, AuditRecord.__table__)
head_table = cast(Table, AuditChainHead.__table__)

_HEAD_COLUMNS = (
    head_table.c.first_sequence,
    head_table.c.anchor_hash,
    head_table.c.last_sequence,
    head_table.c.last_hash,
    head_table.c.mac,
)


# Compiled once and run through the driver on the session's connection, because an append runs
# on every audited action and Connection.execute added about 20 us per statement (SQLite, one
# measurement against 4 us through the driver).
_CLAIM = PreparedStatement(
    update(head_table)
    .where(head_table.c.id == HEAD_ID)
    .values(last_sequence=head_table.c.last_sequence)
    .returning(*_HEAD_COLUMNS)
)
_MOVE = PreparedStatement(
    update(head_table).where(head_table.c.id == HEAD_ID),
    [column.key for column in _HEAD_COLUMNS],
)


@dataclass(frozen=True)
class ChainHead:
    first_sequence: int
    anchor_hash: str
    last_sequence: int
    last_hash: str
    mac: str

    def is_authentic(self, hasher: ChainHasher) -> bool:
        expected = hasher.head_mac(
            self.first_sequence, self.anchor_hash, self.last_sequence, self.last_hash
        )
        return expected == self.mac


def read_head(session: Session) -> ChainHead | None:
    row = session.execute(select(*_HEAD_COLUMNS).where(head_table.c.id == HEAD_ID)).one_or_none()
    return None if row is None else ChainHead(*row)


def lock_head(session: Session, hasher: ChainHasher) -> ChainHead:
    """Lock the head until the transaction ends and return it, creating it for a new chain.

    Raises AuditChainError when the head fails its MAC or is missing while records exist:
    appending then would sign over the tampering.
    """
    reusable = _reusable_head(session)
    if reusable is not None:
        return reusable
    head = _claim(session)
    if head is None:
        _create(session, hasher)
        head = _claim(session)
    if head is None:
        raise AuditChainError("the audit chain head could not be created")
    if not head.is_authentic(hasher):
        raise AuditChainError(
            "the audit chain head fails its check (edited, or written under another key); "
            "nothing is recorded until `llero audit verify` has been run and the cause found"
        )
    return head


def move_head(
    session: Session,
    hasher: ChainHasher,
    *,
    first_sequence: int,
    anchor_hash: str,
    last_sequence: int,
    last_hash: str,
) -> None:
    """Store new ends of the chain with their MAC; the caller holds the lock from lock_head."""
    mac = hasher.head_mac(first_sequence, anchor_hash, last_sequence, last_hash)
    _MOVE.execute(
        session.connection(),
        {
            "first_sequence": first_sequence,
            "anchor_hash": anchor_hash,
            "last_sequence": last_sequence,
            "last_hash": last_hash,
            "mac": mac,
        },
    )
    _remember_head(session, ChainHead(first_sequence, anchor_hash, last_sequence, last_hash, mac))


# A transaction that has locked the head keeps the lock until it ends, and every change to the
# head goes through move_head, so its later appends can reuse the head it last wrote instead of
# claiming and checking it again. That halves the statements per event when one action records
# many (an import). Inside a savepoint nothing is reused, because a savepoint rolled back would
# take the head with it.
_REUSABLE_HEAD = "llero.audit.locked_head"


def _reusable_head(session: Session) -> ChainHead | None:
    remembered = session.info.get(_REUSABLE_HEAD)
    if remembered is None or session.in_nested_transaction():
        return None
    transaction, head = remembered
    return head if transaction is transaction_of(session) else None


def _remember_head(session: Session, head: ChainHead) -> None:
    if session.in_nested_transaction():
        session.info.pop(_REUSABLE_HEAD, None)
        return
    session.info[_REUSABLE_HEAD] = (transaction_of(session), head)


def _claim(session: Session) -> ChainHead | None:
    rows = _CLAIM.execute(session.connection())
    return ChainHead(*rows[0]) if rows else None


def _create(session: Session, hasher: ChainHasher) -> None:
    """Insert the head of an empty chain unless a concurrent transaction already did."""
    values = {
        "id": HEAD_ID,
        "first_sequence": 1,
        "anchor_hash": GENESIS_HASH,
        "last_sequence": 0,
        "last_hash": GENESIS_HASH,
        "mac": hasher.head_mac(1, GENESIS_HASH, 0, GENESIS_HASH),
    }
    inserted = session.execute(
        _insert_if_absent(session).values(values).returning(head_table.c.id)
    ).first()
    if inserted is None:
        return
    # This transaction made the head, so none existed: records without a head mean the head was
    # deleted, and a new empty chain would hide whatever happened to them.
    if session.execute(select(events_table.c.sequence).limit(1)).first() is not None:
        raise AuditChainError(
            "the audit chain head is missing but audit records exist; nothing is recorded "
            "until the cause is found"
        )


def _insert_if_absent(session: Session) -> Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(head_table).on_conflict_do_nothing(index_elements=["id"])
    if dialect == "sqlite":
        return sqlite.insert(head_table).on_conflict_do_nothing(index_elements=["id"])
    # Other databases are not supported; a plain insert fails on a race instead of forking.
    return insert(head_table)
