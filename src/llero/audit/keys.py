"""The audit keys: the chain key from data/keys/audit.key, and a detail-hash key derived from it.

The chain key signs every record (HMAC-SHA256), so whoever can read it can forge a chain that
verifies: keep the key file away from anyone who can write to the database. The detail-hash key
replaces secret values in event details with a keyed hash. It is derived with HKDF under its own
label, so a detail hash can never stand in for a record hash, and publishing detail hashes (in an
export) reveals nothing about the chain key.

NOTE: one key covers the whole chain. Rotating audit.key makes every earlier record fail
verification, because records do not name the key that signed them.
"""

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session, sessionmaker

from llero.config.keyfiles import AUDIT_KEY, read_symmetric_key
from llero.crypto import Secret

# The key under which a session's ``info`` holds the AuditKeys that ``record`` uses.
SESSION_INFO_KEY = "llero.audit.keys"

_DETAIL_HASH_LABEL = b"llero audit detail hash v1"
_KEY_BYTES = 32


class AuditKeysMissing(RuntimeError):
    """The session has no audit keys, so nothing can be recorded and the action must not run."""


@dataclass(frozen=True)
class AuditKeys:
    """The chain key and the detail-hash key, both masked in ``repr``."""

    chain: Secret[bytes]
    detail: Secret[bytes]

    @classmethod
    def from_material(cls, material: bytes) -> "AuditKeys":
        if len(material) != _KEY_BYTES:
            raise ValueError(f"an audit key has {_KEY_BYTES} bytes, not {len(material)}")
        derive = HKDF(
            algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=None, info=_DETAIL_HASH_LABEL
        )
        return cls(chain=Secret(material), detail=Secret(derive.derive(material)))


def load_audit_keys(keys_dir: Path) -> AuditKeys:
    """Read ``keys_dir/audit.key``; raises KeyFileError when it is missing, malformed or exposed."""
    return AuditKeys.from_material(read_symmetric_key(keys_dir / AUDIT_KEY).material)


def attach_keys(session: Session, keys: AuditKeys) -> None:
    """Let ``record`` and ``verify_chain`` use ``keys`` in this one session."""
    session.info[SESSION_INFO_KEY] = keys


def attach_keys_to_factory(factory: sessionmaker[Session], keys: AuditKeys) -> None:
    """Give every session that ``factory`` makes from now on the audit keys."""
    info = dict(factory.kw.get("info") or {})
    info[SESSION_INFO_KEY] = keys
    factory.configure(info=info)


def keys_of(session: Session) -> AuditKeys:
    """Return the keys attached to ``session``; raise AuditKeysMissing when there are none."""
    keys = session.info.get(SESSION_INFO_KEY)
    if not isinstance(keys, AuditKeys):
        raise AuditKeysMissing(
            "no audit keys are attached to this database session; load data/keys/audit.key "
            "with load_audit_keys and attach it with attach_keys_to_factory"
        )
    return keys
