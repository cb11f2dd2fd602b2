"""Fixtures of the storage tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from llero.storage.db import Database
from tests.conftest import POSTGRES_URL, _create_postgres_database, _drop_postgres_database


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[Database]:
    """A database of its own, for tests that migrate down and up."""
    if POSTGRES_URL:
        base = (
            make_url(POSTGRES_URL)
            .set(drivername="postgresql+psycopg")
            .render_as_string(hide_password=False)
        )
        url = _create_postgres_database(base)
        database = Database(url)
        yield database
        database.dispose()
        _drop_postgres_database(base, url)
    else:
        database = Database(f"sqlite:///{tmp_path / 'migration.db'}")
        yield database
        database.dispose()
