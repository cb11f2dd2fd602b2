"""The declarative base and the data-classification registry for every stored column.

Each column names its data class in ``info``; a test walks the metadata and fails on a column
without one. Each confidential or secret column also names how it is kept at rest: as an envelope
that Llero encrypts before the value reaches the database (see llero.vault.fields), or as a hash
that is never turned back into the value. A test fails on one that names neither.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, MetaData
from sqlalchemy.orm import DeclarativeBase, mapped_column
from sqlalchemy.types import TypeDecorator


class DataClass(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    SECRET = "secret"  # noqa: S105 - the name of a data class, not a password


class AtRest(StrEnum):
    """How a confidential or secret column keeps its values at rest."""

    # An envelope of llero.vault.envelope, opened only at the row and field it was sealed for.
    ENVELOPE = "envelope"
    # A one-way or keyed hash (token hashes, password hashes, blind indexes).
    HASH = "hash"


# Stable constraint names, so Alembic can alter them on SQLite and PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    # TODO: on SQLite, a new row takes the id of the newest row once that one is deleted,
    # because no table uses AUTOINCREMENT. Audit records can then name one id for two objects;
    # their sequence numbers and times tell them apart. Adding AUTOINCREMENT rebuilds every
    # table, in a migration that must run with foreign keys switched off.
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def classified(
    data_class: DataClass, *args: Any, at_rest: AtRest | None = None, **kwargs: Any
) -> Any:
    """Return ``mapped_column(*args, **kwargs)`` with its data class and ``at_rest`` recorded."""
    info = dict(kwargs.pop("info", {}))
    info["data_class"] = data_class
    if at_rest is not None:
        info["at_rest"] = at_rest
    return mapped_column(*args, info=info, **kwargs)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no time zone type, so values are normalised to UTC before they are written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)
