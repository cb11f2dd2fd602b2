"""Migration 0014 indexes the skeletons of the addresses that users already have, so that no new
user can take a look-alike of them, and refuses to run without the keys to read those addresses."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, column, insert, inspect, select, table

from llero.access.roles import Role
from llero.audit.context import Origin
from llero.config.keyfiles import create_key_files
from llero.crypto import Secret
from llero.identity import service
from llero.identity.emails import EmailLookalikeTaken
from llero.identity.models import User
from llero.identity.queries import EMAIL_INDEX_PURPOSE, email_keys_of
from llero.storage import migrate
from llero.storage.db import Database
from llero.vault.envelope import Binding, seal_plaintext
from llero.vault.fields import FIELD_VERSION, FieldKeys, attach_field_keys, load_field_keys
from llero.vault.keyring import Keyring, load_keyring

BEFORE = "0013"
# The second spells the first wholly in Cyrillic letters; the third is a name of its own.
ADDRESSES = {
    1: "Access@Example.com",
    2: "\u0430\u0441\u0441\u0435\u0455\u0455@example.com",
    3: "\u0418\u0432\u0430\u043d@example.com",
}


@pytest.fixture
def field_keys(tmp_path: Path) -> FieldKeys:
    keys_dir = tmp_path / "keys"
    create_key_files(keys_dir)
    return load_field_keys(keys_dir, load_keyring(keys_dir))


def _insert_users(engine: Engine, keys: FieldKeys) -> None:
    """Insert users with sealed addresses as the schema before skeletons stores them."""
    now = datetime.now(UTC)
    users = table(
        "users",
        *(
            column(name)
            for name in (
                "id",
                "email_envelope",
                "email_key",
                "display_name",
                "role",
                "status",
                "created_at",
                "updated_at",
            )
        ),
    )
    with engine.begin() as connection:
        for user_id, address in ADDRESSES.items():
            binding = Binding("users", user_id, "email", FIELD_VERSION)
            connection.execute(
                insert(users).values(
                    id=user_id,
                    email_envelope=seal_plaintext(
                        keys.keyring, Secret(address.encode("utf-8")), binding
                    ),
                    email_key=keys.blind_index(EMAIL_INDEX_PURPOSE, address.casefold()),
                    display_name="",
                    role="viewer",
                    status="active",
                    created_at=now,
                    updated_at=now,
                )
            )


def test_migration_indexes_existing_skeletons(
    empty_database: Database, field_keys: FieldKeys
) -> None:
    engine = empty_database.engine
    migrate.upgrade(engine, BEFORE)
    _insert_users(engine, field_keys)

    migrate.upgrade(engine, field_keys=field_keys)

    assert migrate.current_revision(engine) == migrate.head_revision()
    assert migrate.pending_differences(engine) == []
    attach_field_keys(empty_database.sessions, field_keys)
    with empty_database.reader() as session:
        stored = {
            row.id: (row.email_skeleton_key, row.email_upper_skeleton_key)
            for row in session.execute(
                select(User.id, User.email_skeleton_key, User.email_upper_skeleton_key)
            )
        }
        expected = {
            user_id: email_keys_of(session, address) for user_id, address in ADDRESSES.items()
        }
    assert stored[1] == (expected[1].skeleton_key, expected[1].upper_skeleton_key)
    # The later look-alike keeps its account but not the skeleton the first user holds.
    assert stored[2] == (None, None)
    assert stored[3] == (expected[3].skeleton_key, expected[3].upper_skeleton_key)


def test_lookalike_of_migrated_user_rejected(
    empty_database: Database, field_keys: FieldKeys
) -> None:
    engine = empty_database.engine
    migrate.upgrade(engine, BEFORE)
    _insert_users(engine, field_keys)
    migrate.upgrade(engine, field_keys=field_keys)
    attach_field_keys(empty_database.sessions, field_keys)

    with pytest.raises(EmailLookalikeTaken), empty_database.transaction() as session:
        service.create_user(
            session,
            Origin.system("test"),
            # "access" with an invisible variation selector after it.
            email="access\ufe0f@example.com",
            display_name="",
            role=Role.VIEWER,
            now=datetime.now(UTC),
        )


def test_migration_without_keys_refuses(
    empty_database: Database, field_keys: FieldKeys
) -> None:
    migrate.upgrade(empty_database.engine, BEFORE)
    _insert_users(empty_database.engine, field_keys)

    with pytest.raises(RuntimeError, match="needs the key files"):
        migrate.upgrade(empty_database.engine)

    assert migrate.current_revision(empty_database.engine) == BEFORE


def test_migration_with_sealed_keyring_refuses(
    empty_database: Database, field_keys: FieldKeys
) -> None:
    migrate.upgrade(empty_database.engine, BEFORE)
    _insert_users(empty_database.engine, field_keys)
    sealed = FieldKeys(Keyring(), field_keys.index_key)

    with pytest.raises(RuntimeError, match="no key-encryption key is loaded"):
        migrate.upgrade(empty_database.engine, field_keys=sealed)

    assert migrate.current_revision(empty_database.engine) == BEFORE


def test_migration_without_users_needs_no_keys(empty_database: Database) -> None:
    migrate.upgrade(empty_database.engine)

    assert migrate.current_revision(empty_database.engine) == migrate.head_revision()


def test_migration_downgrade_drops_skeleton_columns(
    empty_database: Database, field_keys: FieldKeys
) -> None:
    engine = empty_database.engine
    migrate.upgrade(engine, BEFORE)
    _insert_users(engine, field_keys)
    migrate.upgrade(engine, field_keys=field_keys)

    migrate.downgrade(engine, BEFORE)

    columns = {item["name"] for item in inspect(engine).get_columns("users")}
    assert migrate.current_revision(engine) == BEFORE
    assert "email_skeleton_key" not in columns
    assert "email_upper_skeleton_key" not in columns
    with engine.connect() as connection:
        ids = connection.scalars(select(column("id")).select_from(table("users")).order_by("id"))
        assert list(ids) == [1, 2, 3]
