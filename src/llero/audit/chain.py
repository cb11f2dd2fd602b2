"""The hashed form of a record and of the chain head.

A record hash is HMAC-SHA256 under the chain key over a JSON array: a format label, then every
stored field of the record in a fixed order, ending with ``previous_hash``. A JSON array keeps
each field apart (a field cannot borrow characters from its neighbour, as it could in a joined
string), and the label keeps a record hash from ever equalling a head MAC. Times are hashed as
ISO 8601 UTC with microseconds, the precision both SQLite and PostgreSQL store.

Changing this format makes every stored record fail verification: a new format needs a new
label and a verifier that still accepts the old one.
"""

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from llero.audit.keys import AuditKeys


class AuditChainError(RuntimeError):
    """The chain head is missing or forged, so appending or purging now would hide tampering."""


# previous_hash of the first record ever written.
GENESIS_HASH = "0" * 64

RECORD_LABEL = "llero-audit-record-v1"
HEAD_LABEL = "llero-audit-head-v1"

# The stored fields a record hash covers, in hashed order. ``record_hash`` follows them in
# every row that ``verify_chain`` reads.
HASHED_FIELDS = (
    "sequence",
    "occurred_at",
    "event",
    "actor_kind",
    "actor_id",
    "target_kind",
    "target_id",
    "client_address",
    "request_id",
    "user_agent",
    "detail",
    "previous_hash",
)
_TIME_INDEX = HASHED_FIELDS.index("occurred_at")


def format_time(moment: datetime) -> str:
    """Return ``moment`` as ISO 8601 in UTC with microseconds; a naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


class ChainHasher:
    """Computes record hashes and head MACs under one chain key."""

    def __init__(self, keys: AuditKeys) -> None:
        # Copying a keyed HMAC skips deriving the inner and outer pads for every record, which
        # is a large share of the work when a million records are verified.
        self._template = hmac.new(keys.chain.reveal(), digestmod=hashlib.sha256)

    def _mac(self, payload: list[Any]) -> str:
        mac = self._template.copy()
        mac.update(json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii"))
        return mac.hexdigest()

    def record_hash(self, fields: Sequence[Any]) -> str:
        """Return the hash of one record, given its values in HASHED_FIELDS order."""
        payload = [RECORD_LABEL, *fields[: len(HASHED_FIELDS)]]
        payload[1 + _TIME_INDEX] = format_time(payload[1 + _TIME_INDEX])
        return self._mac(payload)

    def head_mac(
        self, first_sequence: int, anchor_hash: str, last_sequence: int, last_hash: str
    ) -> str:
        return self._mac([HEAD_LABEL, first_sequence, anchor_hash, last_sequence, last_hash])
