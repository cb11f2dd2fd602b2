"""Identity tables: every hash, password and seed column is classified secret, and none of them
stores a token, code or password in a form that could be presented again."""

from sqlalchemy import inspect

from llero.identity import models
from llero.storage.base import DataClass
from llero.storage.db import Database
from llero.storage.registry import metadata

IDENTITY_TABLES = {
    "users",
    "auth_sessions",
    "refresh_tokens",
    "api_tokens",
    "one_time_tokens",
    "recovery_codes",
    "login_throttles",
}

SECRET_COLUMNS = {
    "users.password_hash",
    "users.totp_seed_envelope",
    "users.totp_pending_seed_envelope",
    "refresh_tokens.token_hash",
    "api_tokens.token_hash",
    "one_time_tokens.token_hash",
    "recovery_codes.code_hash",
}


def _classified(data_class: DataClass) -> set[str]:
    return {
        f"{table.name}.{column.name}"
        for table in metadata.sorted_tables
        if table.name in IDENTITY_TABLES
        for column in table.columns
        if column.info["data_class"] is data_class
    }


def test_identity_tables_registered() -> None:
    assert set(metadata.tables) >= IDENTITY_TABLES


def test_identity_secret_columns_classified_secret() -> None:
    assert _classified(DataClass.SECRET) == SECRET_COLUMNS


def test_identity_personal_columns_confidential() -> None:
    assert _classified(DataClass.CONFIDENTIAL) == {
        "users.email_envelope",
        "users.email_key",
        "users.email_skeleton_key",
        "users.email_upper_skeleton_key",
        "auth_sessions.client_address_envelope",
        "auth_sessions.user_agent_envelope",
    }


def test_identity_tables_migrated(database: Database) -> None:
    assert set(inspect(database.engine).get_table_names()) >= IDENTITY_TABLES


def test_email_key_unique() -> None:
    column = models.User.__table__.c.email_key

    assert column.unique is True
