"""Email skeletons: users.email_skeleton_key and users.email_upper_skeleton_key.

Each is a blind index of a UTS #39 skeleton of the user's normalised address (lower and upper
case), under a unique index, so that no new address can read like an existing one. Rows that
exist are filled in from their sealed addresses, which needs the field keys (``llero migrate``
passes them). Without them, or with a sealed keyring, the migration stops before it changes
anything if there is a user. Where two existing users already share a skeleton, the one with
the lower id keeps it and the other's column stays empty; the migration logs both ids.

The unique indexes are created with CREATE INDEX, not as table constraints, because SQLite adds
a constraint only by copying the users table, and dropping the old copy would cascade to every
row that references a user.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 03:00:00.000000
"""

from typing import Any

import sqlalchemy as sa
import structlog
from alembic import context, op

from llero.identity.emails import EmailRejected, email_skeletons, normalize_email
from llero.vault.envelope import Binding, open_plaintext
from llero.vault.fields import FIELD_VERSION, FieldKeys

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

log = structlog.get_logger("llero.storage")

# The purposes of llero.identity.queries when this migration was written, by column.
PURPOSES = {
    "email_skeleton_key": "users.email_skeleton",
    "email_upper_skeleton_key": "users.email_upper_skeleton",
}
# hash_token and blind indexes are 64 hex digits.
KEY_LENGTH = 64


def upgrade() -> None:
    for name in PURPOSES:
        op.add_column("users", sa.Column(name, sa.String(length=KEY_LENGTH), nullable=True))
    users = _users()
    if op.get_bind().execute(sa.select(users.c.id).limit(1)).first() is not None:
        _fill_skeleton_keys(_usable_keys(), users)
    for name in PURPOSES:
        op.create_index(op.f(f"ix_users_{name}"), "users", [name], unique=True)


def downgrade() -> None:
    for name in PURPOSES:
        op.drop_index(op.f(f"ix_users_{name}"), table_name="users")
        op.drop_column("users", name)


def _users() -> sa.TableClause:
    columns: list[sa.ColumnClause[Any]] = [
        sa.column("id", sa.Integer()),
        sa.column("email_envelope", sa.LargeBinary()),
    ]
    columns += [sa.column(name, sa.String(KEY_LENGTH)) for name in PURPOSES]
    return sa.table("users", *columns)


def _usable_keys() -> FieldKeys:
    keys: FieldKeys | None = context.config.attributes.get("field_keys")
    if keys is None:
        raise RuntimeError(
            "migration 0014 reads stored email addresses to index their skeletons, and needs "
            "the key files for it; run `llero migrate`, which loads them"
        )
    if keys.keyring.sealed:
        raise RuntimeError(
            "migration 0014 reads sealed email addresses but no key-encryption key is loaded; "
            "provide data/keys/master.key or LLERO_MASTER_KEY and run `llero migrate` again"
        )
    return keys


def _fill_skeleton_keys(keys: FieldKeys, users: sa.TableClause) -> None:
    holders: dict[tuple[str, str], int] = {}
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.email_envelope).order_by(users.c.id))
    for user_id, envelope in list(rows):
        values = _skeleton_keys(keys, user_id, envelope)
        for name, key in list(values.items()):
            holder = holders.setdefault((name, key), user_id)
            if holder != user_id:
                log.warning("migration:skeleton_taken", user_id=user_id, holder_id=holder)
                values[name] = None
        if values:
            connection.execute(sa.update(users).where(users.c.id == user_id).values(values))


def _skeleton_keys(keys: FieldKeys, user_id: int, envelope: bytes | None) -> dict[str, Any]:
    if envelope is None:
        return {}
    binding = Binding("users", user_id, "email", FIELD_VERSION)
    address = open_plaintext(keys.keyring, bytes(envelope), binding).reveal().decode("utf-8")
    try:
        skeletons = email_skeletons(normalize_email(address))
    except EmailRejected:
        # Only an address stored under older, looser rules can fail here. It gets no skeleton
        # keys, which leaves its sign-in as it was.
        log.warning("migration:email_not_normalised", user_id=user_id)
        return {}
    return {
        "email_skeleton_key": keys.blind_index(PURPOSES["email_skeleton_key"], skeletons.lower),
        "email_upper_skeleton_key": keys.blind_index(
            PURPOSES["email_upper_skeleton_key"], skeletons.upper
        ),
    }
