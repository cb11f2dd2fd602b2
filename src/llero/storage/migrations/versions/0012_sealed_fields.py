"""Sealed fields: email addresses, TOTP seeds and session clients stored as envelopes.

The plain columns are replaced by envelope columns, and users.email_key changes from the
normalised address to its blind index. Rows that exist are converted in place, which needs the
field keys (``llero init`` and ``llero migrate`` pass them). Without them, or with a sealed
keyring, the migration stops before it changes anything if there is a row to convert.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 23:20:00.000000
"""

from typing import Any

import sqlalchemy as sa
from alembic import context, op

from llero.crypto import Secret
from llero.identity.emails import normalize_email
from llero.vault.envelope import Binding, open_plaintext, seal_plaintext
from llero.vault.fields import FIELD_VERSION, FieldKeys

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The purpose of llero.identity.queries.EMAIL_INDEX_PURPOSE when this migration was written.
EMAIL_INDEX_PURPOSE = "users.email"

# (table, plain column, envelope column, plain column length, plain column nullable)
FIELDS = (
    ("users", "email", "email_envelope", 320, False),
    ("users", "totp_seed", "totp_seed_envelope", 64, True),
    ("users", "totp_pending_seed", "totp_pending_seed_envelope", 64, True),
    ("auth_sessions", "user_agent", "user_agent_envelope", 256, False),
    ("auth_sessions", "client_address", "client_address_envelope", 64, False),
)
TABLES = ("users", "auth_sessions")


def upgrade() -> None:
    for table, _plain, envelope, _length, _nullable in FIELDS:
        op.add_column(table, sa.Column(envelope, sa.LargeBinary(), nullable=True))
    if _has_rows():
        keys = _usable_keys()
        for table in TABLES:
            _seal_rows(keys, table)
    for table, plain, _envelope, _length, _nullable in FIELDS:
        op.drop_column(table, plain)


def downgrade() -> None:
    # SQLite adds a NOT NULL column only with a default. Removing the default again would make
    # SQLite copy the table, and dropping the old users table would cascade to every row that
    # references a user, so on SQLite the default stays.
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, plain, _envelope, length, nullable in FIELDS:
        default = None if nullable else ""
        column_type = sa.String(length=length)
        op.add_column(
            table, sa.Column(plain, column_type, nullable=nullable, server_default=default)
        )
    if _has_rows():
        keys = _usable_keys()
        for table in TABLES:
            _open_rows(keys, table)
    for table, plain, envelope, _length, nullable in FIELDS:
        op.drop_column(table, envelope)
        if postgres and not nullable:
            op.alter_column(table, plain, server_default=None)


def _table(table: str) -> sa.TableClause:
    """Return a lightweight table with the id, every field column, and users.email_key."""
    columns: list[sa.ColumnClause[Any]] = [sa.column("id", sa.Integer())]
    for name, plain, envelope, length, _ in FIELDS:
        if name == table:
            columns += [sa.column(plain, sa.String(length)), sa.column(envelope, sa.LargeBinary())]
    if table == "users":
        columns.append(sa.column("email_key", sa.String(254)))
    return sa.table(table, *columns)


def _has_rows() -> bool:
    connection = op.get_bind()
    return any(
        connection.execute(sa.select(_table(table).c.id).limit(1)).first() for table in TABLES
    )


def _usable_keys() -> FieldKeys:
    keys: FieldKeys | None = context.config.attributes.get("field_keys")
    if keys is None:
        raise RuntimeError(
            "migration 0008 seals stored email addresses, TOTP seeds and session clients, and "
            "needs the key files for it; run `llero migrate`, which loads them"
        )
    if keys.keyring.sealed:
        raise RuntimeError(
            "migration 0008 seals stored values but no key-encryption key is loaded; provide "
            "data/keys/master.key or LLERO_MASTER_KEY and run `llero migrate` again"
        )
    return keys


def _fields_of(table: str) -> list[tuple[str, str]]:
    return [(plain, envelope) for name, plain, envelope, _, _ in FIELDS if name == table]


def _seal_rows(keys: FieldKeys, table: str) -> None:
    clause = _table(table)
    for row in _rows(clause):
        values: dict[str, Any] = {
            envelope: _seal(keys, table, row["id"], plain, row[plain])
            for plain, envelope in _fields_of(table)
        }
        if table == "users":
            values["email_key"] = keys.blind_index(EMAIL_INDEX_PURPOSE, row["email_key"])
        _update(clause, row["id"], values)


def _open_rows(keys: FieldKeys, table: str) -> None:
    clause = _table(table)
    for row in _rows(clause):
        values: dict[str, Any] = {
            plain: _open(keys, table, row["id"], plain, row[envelope])
            for plain, envelope in _fields_of(table)
        }
        if table == "users":
            values["email_key"] = normalize_email(values["email"])
        _update(clause, row["id"], values)


def _rows(clause: sa.TableClause) -> list[sa.RowMapping]:
    return list(op.get_bind().execute(sa.select(clause)).mappings())


def _update(clause: sa.TableClause, row_id: int, values: dict[str, Any]) -> None:
    op.get_bind().execute(sa.update(clause).where(clause.c.id == row_id).values(values))


def _seal(keys: FieldKeys, table: str, row_id: int, field: str, value: str | None) -> bytes | None:
    if value is None:
        return None
    binding = Binding(table, row_id, field, FIELD_VERSION)
    return seal_plaintext(keys.keyring, Secret(value.encode("utf-8")), binding)


def _open(keys: FieldKeys, table: str, row_id: int, field: str, data: bytes | None) -> str | None:
    if data is None:
        return None
    binding = Binding(table, row_id, field, FIELD_VERSION)
    return open_plaintext(keys.keyring, bytes(data), binding).reveal().decode("utf-8")
