"""Every stored column names its data class, so the protection each value needs (plain, access
controlled, encrypted) is decided when the column is added, not later. Every confidential or
secret column is sealed or hashed, and key rotation reaches every sealed one."""

from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table

from llero.storage.base import AtRest, DataClass, classified
from llero.storage.registry import metadata
from llero.vault.fields import sealed_fields
from llero.vault.rotation import ENCRYPTED_COLUMNS


def unclassified_columns(schema: MetaData) -> list[str]:
    """Return ``table.column`` for each column whose info lacks a valid data class."""
    return [
        f"{table.name}.{column.name}"
        for table in schema.sorted_tables
        for column in table.columns
        if column.info.get("data_class") not in set(DataClass)
    ]


def test_every_column_has_data_class() -> None:
    assert unclassified_columns(metadata) == []
    # The registry must hold the product's tables, or the check above proves nothing.
    assert {"tools", "tool_versions", "categories", "agents", "agent_tools"} <= set(metadata.tables)


def test_unclassified_column_detected() -> None:
    schema = MetaData()
    Table(
        "accounts",
        schema,
        Column("id", Integer, primary_key=True, info={"data_class": DataClass.INTERNAL}),
        Column("email", String(256)),
        Column("api_key", String(64), info={"data_class": "top-secret"}),
        Column("note", String(64), info={"owner": "someone"}),
    )

    assert unclassified_columns(schema) == ["accounts.email", "accounts.api_key", "accounts.note"]


def test_classified_records_data_class_and_keeps_info() -> None:
    column = classified(DataClass.SECRET, String(64), info={"owner": "vault"})

    assert column.column.info == {"owner": "vault", "data_class": DataClass.SECRET}


PROTECTED = {DataClass.CONFIDENTIAL, DataClass.SECRET}


def unprotected_columns(schema: MetaData) -> list[str]:
    """Return ``table.column`` for each confidential or secret column stored as it is given.

    Such a column must hold envelopes (binary, sealed by Llero) or hashes, nothing else.
    """
    found = []
    for table in schema.sorted_tables:
        for column in table.columns:
            if column.info.get("data_class") not in PROTECTED:
                continue
            at_rest = column.info.get("at_rest")
            sealed = at_rest is AtRest.ENVELOPE and isinstance(column.type, LargeBinary)
            if not sealed and at_rest is not AtRest.HASH:
                found.append(f"{table.name}.{column.name}")
    return found


def test_confidential_columns_sealed_or_hashed() -> None:
    assert unprotected_columns(metadata) == []


def test_unprotected_column_detected() -> None:
    schema = MetaData()
    Table(
        "accounts",
        schema,
        Column("id", Integer, primary_key=True, info={"data_class": DataClass.INTERNAL}),
        Column("email", String(256), info={"data_class": DataClass.CONFIDENTIAL}),
        Column(
            "seed",
            String(64),
            info={"data_class": DataClass.SECRET, "at_rest": AtRest.ENVELOPE},
        ),
        Column(
            "token_hash",
            String(64),
            info={"data_class": DataClass.SECRET, "at_rest": AtRest.HASH},
        ),
    )

    assert unprotected_columns(schema) == ["accounts.email", "accounts.seed"]


def test_every_envelope_column_rotated() -> None:
    envelope_columns = {
        f"{table.name}.{column.name}"
        for table in metadata.sorted_tables
        for column in table.columns
        if column.info.get("at_rest") is AtRest.ENVELOPE
    }
    rotated = {f"{item.table.name}.{item.envelope.name}" for item in ENCRYPTED_COLUMNS}

    assert envelope_columns == rotated
    assert {"users.email_envelope", "secret_versions.envelope"} <= envelope_columns


def test_every_sealed_field_has_envelope_column() -> None:
    fields = {(field.table, field.envelope) for field in sealed_fields()}
    rotated = {(item.table.name, item.envelope.name) for item in ENCRYPTED_COLUMNS}

    assert fields <= rotated
    assert ("users", "email_envelope") in fields
