"""Every stored column names its data class, so the protection each value needs (plain, access
controlled, encrypted) is decided when the column is added, not later."""

from sqlalchemy import Column, Integer, MetaData, String, Table

from llero.storage.base import DataClass, classified
from llero.storage.registry import metadata


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
