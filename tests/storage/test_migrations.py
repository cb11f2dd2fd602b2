"""The migrations and the models describe the same schema, and the migration history is one line.

A model change without its migration fails here: add a script under
src/llero/storage/migrations/versions that makes the same change.
"""

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, Table, inspect

from llero.storage import migrate
from llero.storage.db import Database
from llero.storage.registry import metadata


def _copy_of_models() -> MetaData:
    copy = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(copy)
    return copy


def test_migrations_match_models(database: Database) -> None:
    assert migrate.pending_differences(database.engine) == []


def test_model_column_without_migration_detected(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    drifted = _copy_of_models()
    drifted.tables["tools"].append_column(Column("added_without_migration", String(32)))
    monkeypatch.setattr(migrate, "metadata", drifted)

    differences = migrate.pending_differences(database.engine)

    added = [d for d in differences if isinstance(d, tuple) and d[0] == "add_column"]
    assert [(d[2], d[3].name) for d in added] == [("tools", "added_without_migration")]


def test_model_table_without_migration_detected(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    drifted = _copy_of_models()
    Table("unmigrated", drifted, Column("name", String(16), primary_key=True))
    monkeypatch.setattr(migrate, "metadata", drifted)

    differences = migrate.pending_differences(database.engine)

    added = [d for d in differences if isinstance(d, tuple) and d[0] == "add_table"]
    assert [d[1].name for d in added] == ["unmigrated"]


def test_migration_history_has_one_head() -> None:
    scripts = ScriptDirectory(str(migrate.MIGRATIONS_DIR))

    assert len(scripts.get_heads()) == 1
    assert scripts.get_current_head() == migrate.head_revision()


def test_fresh_database_migrates_to_head(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert migrate.current_revision(database.engine) is None

        migrate.upgrade(database.engine)

        assert migrate.current_revision(database.engine) == migrate.head_revision()
        assert set(metadata.tables) <= set(inspect(database.engine).get_table_names())
        assert migrate.pending_differences(database.engine) == []
    finally:
        database.dispose()
