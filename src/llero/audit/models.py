"""The audit trail: one row per event, linked into a hash chain, and the head of that chain.

Each record stores ``previous_hash``, the ``record_hash`` of the record before it, and its own
``record_hash``: HMAC-SHA256 under the audit key over every other field (see
``llero.audit.chain``). Without the key nobody can edit, insert, delete or reorder a record
without ``verify_chain`` noticing. The one ``audit_chain`` row names the last record and, after a
retention purge, the first record still stored and the hash it links to; its own HMAC stops a
writer from hiding a truncated tail or an unrecorded purge by editing it.

Data classes: every column is internal. The detail is internal because ``record`` replaces every
secret in it with a keyed hash before it is stored.

The client address is stored as given, classed internal, and not hashed or encrypted. It is
personal data, but an investigator needs the real address to block or report an attacker, and a
keyed hash of an IPv4 address would not protect it anyway: with the key, all 2**32 addresses can
be hashed in minutes, so the hash would only hinder the investigator. The address is part of
the hashed record, so it can only be removed with the whole record, by the retention purge
(365 days by default).
"""

import json
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped

from llero.audit.context import (
    ACTOR_ID_MAX,
    CLIENT_ADDRESS_MAX,
    REQUEST_ID_MAX,
    TARGET_ID_MAX,
    TARGET_KIND_MAX,
    USER_AGENT_MAX,
)
from llero.audit.redaction import DETAIL_MAX_BYTES
from llero.storage.base import Base, DataClass, UTCDateTime, classified

EVENT_MAX = 64
HASH_LENGTH = 64  # hex digits of a SHA-256 HMAC

# INTEGER PRIMARY KEY makes the sequence SQLite's rowid, so appends need no second index; a
# plain BIGINT key would not.
SequenceType = BigInteger().with_variant(Integer(), "sqlite")


class AuditRecord(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint(f"length(detail) <= {DETAIL_MAX_BYTES}", name="detail_size"),
        CheckConstraint("actor_kind IN ('agent', 'system', 'user')", name="actor_kind"),
        Index("ix_audit_events_actor", "actor_kind", "actor_id"),
        Index("ix_audit_events_target", "target_kind", "target_id"),
    )

    # Assigned by ``record`` as the chain head's last sequence plus one, never by the database,
    # so a gap always means a deleted record.
    sequence: Mapped[int] = classified(
        DataClass.INTERNAL, SequenceType, primary_key=True, autoincrement=False
    )
    occurred_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, index=True)
    event: Mapped[str] = classified(DataClass.INTERNAL, String(EVENT_MAX), index=True)
    actor_kind: Mapped[str] = classified(DataClass.INTERNAL, String(16))
    actor_id: Mapped[str | None] = classified(DataClass.INTERNAL, String(ACTOR_ID_MAX))
    target_kind: Mapped[str | None] = classified(DataClass.INTERNAL, String(TARGET_KIND_MAX))
    target_id: Mapped[str | None] = classified(DataClass.INTERNAL, String(TARGET_ID_MAX))
    client_address: Mapped[str | None] = classified(DataClass.INTERNAL, String(CLIENT_ADDRESS_MAX))
    request_id: Mapped[str | None] = classified(DataClass.INTERNAL, String(REQUEST_ID_MAX))
    user_agent: Mapped[str | None] = classified(DataClass.INTERNAL, String(USER_AGENT_MAX))
    # Canonical JSON text, stored as text so the hashed bytes are exactly the stored bytes.
    detail: Mapped[str] = classified(DataClass.INTERNAL, Text)
    previous_hash: Mapped[str] = classified(DataClass.INTERNAL, String(HASH_LENGTH))
    record_hash: Mapped[str] = classified(DataClass.INTERNAL, String(HASH_LENGTH))

    def detail_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.detail)
        return data


class AuditChainHead(Base):
    """The one row that records where the chain starts and ends."""

    __tablename__ = "audit_chain"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    # The first stored record, and the record_hash its previous_hash must equal: the genesis
    # hash until a purge, then the hash of the last purged record.
    first_sequence: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)
    anchor_hash: Mapped[str] = classified(DataClass.INTERNAL, String(HASH_LENGTH))
    # The last record; 0 and the anchor while the chain is empty.
    last_sequence: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)
    last_hash: Mapped[str] = classified(DataClass.INTERNAL, String(HASH_LENGTH))
    # HMAC under the audit key over the four fields above.
    mac: Mapped[str] = classified(DataClass.INTERNAL, String(HASH_LENGTH))
