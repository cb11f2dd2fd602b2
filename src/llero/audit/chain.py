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
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from llero.audit.encoding import make_compact_encoder
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
# record_hash takes the sequence and the time from the first two places, for speed.
_FIELD_COUNT = len(HASHED_FIELDS)

_SQLITE_TIME_LENGTH = len("2026-01-31 23:59:59.000000")


# The payload is a flat list, so the encoder's missing circular reference check cannot matter.
_encode = make_compact_encoder(sort_keys=False, allow_nan=True)


def format_time(moment: datetime | str) -> str:
    """Return ``moment`` as ISO 8601 in UTC with microseconds; a naive time is taken as UTC.

    A string is a time as SQLite stores it, read without conversion to save the parse when a
    whole chain is verified.
    """
    if isinstance(moment, str):
        # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" in UTC. Any other text is parsed, and
        # text that is not a time raises ValueError.
        if len(moment) == _SQLITE_TIME_LENGTH and moment[10] == " ":
            return f"{moment[:10]}T{moment[11:]}+00:00"
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


class _Mac(Protocol):
    def copy(self) -> "_Mac": ...

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class ChainHasher:
    """Computes record hashes and head MACs under one chain key."""

    # The keys and the hasher that ``of`` made last.
    _latest: ClassVar[tuple[AuditKeys, "ChainHasher"] | None] = None

    def __init__(self, keys: AuditKeys) -> None:
        # Copying a keyed HMAC skips deriving the inner and outer pads for every record, which
        # is a large share of the work when a million records are verified.
        template = hmac.new(keys.chain.reveal(), digestmod=hashlib.sha256)
        # CPython keeps the OpenSSL HMAC object that does the work in ``_hmac``; copying it
        # directly skips three Python-level wrapper calls per record. The attribute is not
        # public, so without it the documented object is copied instead, with the same result.
        self._template: _Mac = getattr(template, "_hmac", template)

    @classmethod
    def of(cls, keys: AuditKeys) -> "ChainHasher":
        """Return the hasher of ``keys``, made once while the same keys are used.

        The keys of a server stay the same, and making the keyed HMAC was about a tenth of an
        append's work.
        """
        latest = cls._latest
        if latest is not None and latest[0] is keys:
            return latest[1]
        hasher = cls(keys)
        # Replaced in one assignment, so every thread reads keys and hasher that match.
        cls._latest = (keys, hasher)
        return hasher

    def _mac(self, payload: list[Any]) -> str:
        mac = self._template.copy()
        mac.update(_encode(payload).encode("ascii"))
        return mac.hexdigest()

    def record_hash(self, fields: Sequence[Any]) -> str:
        """Return the hash of one record, given its values in HASHED_FIELDS order."""
        return self._mac([RECORD_LABEL, fields[0], format_time(fields[1]), *fields[2:_FIELD_COUNT]])

    def head_mac(
        self, first_sequence: int, anchor_hash: str, last_sequence: int, last_hash: str
    ) -> str:
        return self._mac([HEAD_LABEL, first_sequence, anchor_hash, last_sequence, last_hash])
