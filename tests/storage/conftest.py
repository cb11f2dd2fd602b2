"""Fixtures of the storage tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from llero.storage.db import Database
from tests.conftest import database_of_its_own


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[Database]:
    """A database of its own, for tests that migrate down and up."""
    with database_of_its_own(tmp_path / "migration.db") as url:
        database = Database(url)
        yield database
        database.dispose()
