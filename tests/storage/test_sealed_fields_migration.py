"""Migration 0008 seals the email addresses, TOTP seeds and session clients that earlier versions
stored in clear, and refuses to run without the keys when there is a row to convert."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, column, insert, select, table

from llero.config.keyfiles import create_key_files
from llero.identity.models import AuthSession, User
from llero.identity.queries import EMAIL_INDEX_PURPOSE, user_by_email
from llero.storage import migrate
from llero.storage.db import Database
from llero.vault.fields import FieldKeys, attach_field_keys, load_field_keys
from llero.vault.keyring import Keyring, load_keyring

BEFORE = "0011"
ADDRESS = "Grace.Hopper@Example.COM"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
USER_AGENT = "Mozilla/5.0 (migration test)"
CLIENT_ADDRESS = "198.51.100.23"


@pytest.fixture
def field_keys(tmp_path: Path) -> FieldKeys:
    keys_dir = tmp_path / "keys"
    create_key_files(keys_dir)
    return load_field_keys(keys_dir, load_keyring(keys_dir))


def _insert_plain_rows(engine: Engine) -> tuple[int, int]:
    """Insert a user and a sign-in session as the schema before sealed fields stores them."""
    now = datetime.now(UTC)
    users = table(
        "users",
        *(
            column(name)
            for name in (
                "id",
                "email",
                "email_key",
                "display_name",
                "role",
                "status",
                "totp_seed",
                "created_at",
                "updated_at",
            )
        ),
    )
    sessions = table(
        "auth_sessions",
        *(
            column(name)
            for name in (
                "id",
                "user_id",
                "user_agent",
                "client_address",
                "created_at",
                "last_used_at",
                "idle_expires_at",
                "absolute_expires_at",
            )
        ),
    )
    with engine.begin() as connection:
        connection.execute(
            insert(users).values(
                id=7,
                email=ADDRESS,
                email_key="grace.hopper@example.com",
                display_name="Grace",
                role="developer",
                status="active",
                totp_seed=SEED,
                created_at=now,
                updated_at=now,
            )
        )
        connection.execute(
            insert(sessions).values(
                id=3,
                user_id=7,
                user_agent=USER_AGENT,
                client_address=CLIENT_ADDRESS,
                created_at=now,
                last_used_at=now,
                idle_expires_at=now + timedelta(hours=1),
                absolute_expires_at=now + timedelta(hours=8),
            )
        )
    return 7, 3


def test_migration_without_keys_refuses(empty_database: Database) -> None:
    migrate.upgrade(empty_database.engine, BEFORE)
    _insert_plain_rows(empty_database.engine)

    with pytest.raises(RuntimeError, match="needs the key files"):
        migrate.upgrade(empty_database.engine)

    assert migrate.current_revision(empty_database.engine) == BEFORE


def test_migration_with_sealed_keyring_refuses(
    empty_database: Database, field_keys: FieldKeys
) -> None:
    migrate.upgrade(empty_database.engine, BEFORE)
    _insert_plain_rows(empty_database.engine)
    sealed = FieldKeys(Keyring(), field_keys.index_key)

    with pytest.raises(RuntimeError, match="no key-encryption key is loaded"):
        migrate.upgrade(empty_database.engine, field_keys=sealed)

    assert migrate.current_revision(empty_database.engine) == BEFORE


def test_migration_seals_existing_rows(empty_database: Database, field_keys: FieldKeys) -> None:
    engine = empty_database.engine
    migrate.upgrade(engine, BEFORE)
    user_id, session_id = _insert_plain_rows(engine)

    migrate.upgrade(engine, field_keys=field_keys)

    assert migrate.current_revision(engine) == migrate.head_revision()
    assert migrate.pending_differences(engine) == []
    attach_field_keys(empty_database.sessions, field_keys)
    with empty_database.reader() as session:
        user = session.get(User, user_id)
        auth_session = session.get(AuthSession, session_id)
        assert user is not None
        assert auth_session is not None
        assert user.email == ADDRESS
        assert user.totp_seed == SEED
        assert user.totp_pending_seed is None
        assert user.email_key == field_keys.blind_index(
            EMAIL_INDEX_PURPOSE, "grace.hopper@example.com"
        )
        assert user_by_email(session, "GRACE.hopper@example.com") is not None
        assert auth_session.user_agent == USER_AGENT
        assert auth_session.client_address == CLIENT_ADDRESS
        stored = session.execute(select(User.email_envelope, User.totp_seed_envelope)).one()
        assert ADDRESS.encode() not in stored.email_envelope
        assert SEED.encode() not in stored.totp_seed_envelope


def test_migration_downgrade_restores_plain_rows(
    empty_database: Database, field_keys: FieldKeys
) -> None:
    engine = empty_database.engine
    migrate.upgrade(engine, BEFORE)
    _insert_plain_rows(engine)
    migrate.upgrade(engine, field_keys=field_keys)

    migrate.downgrade(engine, BEFORE, field_keys=field_keys)

    users = table("users", column("email"), column("email_key"), column("totp_seed"))
    sessions = table("auth_sessions", column("user_agent"), column("client_address"))
    with engine.connect() as connection:
        user = connection.execute(select(users)).one()
        auth_session = connection.execute(select(sessions)).one()
    assert migrate.current_revision(engine) == BEFORE
    assert tuple(user) == (ADDRESS, "grace.hopper@example.com", SEED)
    assert tuple(auth_session) == (USER_AGENT, CLIENT_ADDRESS)
