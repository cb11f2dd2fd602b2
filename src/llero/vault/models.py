"""Stored secrets, their versions (each an envelope), and the progress of KEK rotations."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped

from llero.storage.base import AtRest, Base, DataClass, UTCDateTime, classified, utc_now

NAME_MAX = 64
DESCRIPTION_MAX = 4096
HINT_LENGTH = 4
KEK_ID_LENGTH = 16
BACKEND_MAX = 16
# The longest reference an external backend may return; AWS secret names allow 512 characters.
REFERENCE_MAX = 512


class SecretKind(StrEnum):
    PROVIDER_API_KEY = "provider_api_key"
    WEBHOOK_SIGNING_KEY = "webhook_signing_key"
    GENERIC = "generic"


class StoredSecret(Base):
    """A named secret; its values are the rows of ``SecretVersion``."""

    __tablename__ = "secrets"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    name: Mapped[str] = classified(DataClass.INTERNAL, String(NAME_MAX), unique=True)
    kind: Mapped[str] = classified(DataClass.INTERNAL, String(32), default=SecretKind.GENERIC)
    description: Mapped[str] = classified(DataClass.INTERNAL, Text, default="")
    # TODO: make this a foreign key to users.id once the users table has landed. Until then,
    # nothing stops it from naming a user that does not exist.
    owner_user_id: Mapped[int | None] = classified(
        DataClass.INTERNAL, Integer, nullable=True, index=True
    )
    current_version: Mapped[int] = classified(DataClass.INTERNAL, Integer, default=0)
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


# A built-in value has an envelope until it is destroyed; an external one never has an envelope
# and always has its reference, so the backend can still be told to destroy it after a failure.
ENVELOPE_RULE = (
    "(backend = 'builtin' AND destroyed AND envelope IS NULL AND kek_id IS NULL) OR "
    "(backend = 'builtin' AND NOT destroyed AND envelope IS NOT NULL AND kek_id IS NOT NULL) OR "
    "(backend <> 'builtin' AND envelope IS NULL AND kek_id IS NULL AND reference IS NOT NULL)"
)


class SecretVersion(Base):
    """One value of a secret, stored only as an envelope (see vault/envelope.py).

    Destroying a version deletes its envelope, wrapped data key included, and keeps the row as a
    record of what existed. The check constraint keeps ``destroyed`` and the envelope in step.

    A value kept by an external backend (see vault/values.py) has no envelope: the row names the
    backend and the ``reference`` under which that backend stores it.
    """

    __tablename__ = "secret_versions"
    __table_args__ = (
        UniqueConstraint("secret_id", "version", name="uq_secret_versions_secret_version"),
        CheckConstraint(ENVELOPE_RULE, name="envelope_unless_destroyed"),
    )

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    secret_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("secrets.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = classified(DataClass.INTERNAL, Integer)
    envelope: Mapped[bytes | None] = classified(
        DataClass.SECRET,
        LargeBinary,
        nullable=True,
        at_rest=AtRest.ENVELOPE,
        info={"kek_id_column": "kek_id"},
    )
    # The KEK that wraps the envelope's data key, copied out of the envelope so that rotation can
    # find the records that still need an old KEK with an index instead of reading every envelope.
    kek_id: Mapped[str | None] = classified(
        DataClass.INTERNAL, String(KEK_ID_LENGTH), nullable=True, index=True
    )
    # Where the value lives: "builtin" (the envelope above), "hashicorp" or "aws".
    backend: Mapped[str] = classified(
        DataClass.INTERNAL, String(BACKEND_MAX), default="builtin", server_default="builtin"
    )
    # The path or secret name under which an external backend stores the value. It names no
    # value and no credential, and an admin needs it to find the value in that backend.
    reference: Mapped[str | None] = classified(
        DataClass.INTERNAL, String(REFERENCE_MAX), nullable=True
    )
    # The last characters of the value, shown so a user can tell keys apart. Stored in plain text
    # on purpose, and left empty for values too short to give part of them away.
    hint: Mapped[str] = classified(DataClass.INTERNAL, String(HINT_LENGTH), default="")
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    # When a newer version replaced this one as the secret's current value.
    rotated_at: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = classified(
        DataClass.INTERNAL, UTCDateTime, nullable=True
    )
    expires_at: Mapped[datetime | None] = classified(DataClass.INTERNAL, UTCDateTime, nullable=True)
    destroyed: Mapped[bool] = classified(DataClass.INTERNAL, Boolean, default=False)
    destroyed_at: Mapped[datetime | None] = classified(
        DataClass.INTERNAL, UTCDateTime, nullable=True
    )


class SecretKey(Base):
    """The per-secret key that encrypts each version's value inside that version's envelope.

    Deleting a secret deletes this row. A version envelope copied anywhere before (an external
    backend's version history, a table export) then opens with the KEK only to a ciphertext whose
    key no longer exists.
    """

    __tablename__ = "secret_keys"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    secret_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("secrets.id", ondelete="CASCADE"), unique=True
    )
    # The key, sealed in an envelope like any value, so KEK rotation re-wraps it too.
    envelope: Mapped[bytes] = classified(
        DataClass.SECRET,
        LargeBinary,
        at_rest=AtRest.ENVELOPE,
        info={"kek_id_column": "kek_id"},
    )
    kek_id: Mapped[str] = classified(DataClass.INTERNAL, String(KEK_ID_LENGTH), index=True)
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)


class KekRotation(Base):
    """How far the re-wrapping of one table's data keys under one target KEK has come.

    ``cursor`` is the highest primary key already handled. Each batch moves it in the same
    transaction as its updates, so a crash resumes after the last committed batch.
    """

    __tablename__ = "kek_rotations"
    __table_args__ = (
        UniqueConstraint("table_name", "target_kek_id", name="uq_kek_rotations_table_target"),
    )

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    table_name: Mapped[str] = classified(DataClass.INTERNAL, String(NAME_MAX))
    target_kek_id: Mapped[str] = classified(DataClass.INTERNAL, String(KEK_ID_LENGTH))
    cursor: Mapped[int] = classified(DataClass.INTERNAL, Integer, default=0)
    rewrapped: Mapped[int] = classified(DataClass.INTERNAL, Integer, default=0)
    started_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    finished_at: Mapped[datetime | None] = classified(
        DataClass.INTERNAL, UTCDateTime, nullable=True
    )
