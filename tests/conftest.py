"""Fixtures shared by every test: settings in a temporary data directory, a migrated database
(SQLite, or PostgreSQL when LLERO_TEST_DATABASE_URL names a server), and an HTTP client."""

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from llero.config.keyfiles import create_key_files, make_private_dir
from llero.config.settings import Settings
from llero.storage import migrate
from llero.storage.db import Database
from llero.storage.registry import metadata
from llero.web.app import create_app

POSTGRES_URL = os.environ.get("LLERO_TEST_DATABASE_URL")
CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "bfcl"


@pytest.fixture(autouse=True)
def _clean_llero_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own LLERO_* variables and .env out of every test."""
    for name in list(os.environ):
        if name.startswith("LLERO_") and not name.startswith("LLERO_TEST_"):
            monkeypatch.delenv(name)


def _create_postgres_database(base_url: str) -> str:
    name = f"llero_test_{secrets.token_hex(4)}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(base_url: str, url: str) -> None:
    name = make_url(url).database
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if POSTGRES_URL:
        base = (
            make_url(POSTGRES_URL)
            .set(drivername="postgresql+psycopg")
            .render_as_string(hide_password=False)
        )
        url = _create_postgres_database(base)
        yield url
        _drop_postgres_database(base, url)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'llero.db'}"


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def database(migrated_database: Database) -> Iterator[Database]:
    """The session's migrated database, emptied after each test."""
    yield migrated_database
    with migrated_database.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    make_private_dir(path)
    create_key_files(path / "keys")
    return path


@pytest.fixture
def settings(data_dir: Path, database: Database) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url=database.url,
        allowed_hosts=["testserver", "127.0.0.1", "localhost"],
        allowed_origins=["https://app.example.com"],
    )


@pytest.fixture
def client(settings: Settings, database: Database) -> Iterator[TestClient]:
    app = create_app(settings, database)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
