"""Fixtures shared by every test: settings in a temporary data directory, a migrated database
(SQLite, or PostgreSQL when LLERO_TEST_DATABASE_URL names a server), and HTTP clients.

``client`` is signed in as an admin who has enrolled a second factor, so it may call every route;
``anonymous_client`` sends no credential; ``make_user`` creates users of any role and state.
"""

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from llero.access.roles import Role
from llero.config.keyfiles import create_key_files, make_private_dir
from llero.config.settings import Settings
from llero.identity.context import IdentityContext
from llero.identity.mfa import new_totp_seed
from llero.identity.models import User, UserStatus
from llero.identity.queries import email_keys_of
from llero.identity.sessions import ClientInfo, start_session
from llero.storage import migrate
from llero.storage.db import Database
from llero.storage.registry import metadata
from llero.web.app import create_app
from tests.smtp_server import LOOPBACK, MailServer

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


# Run by a child process: write the bytes of each file named in argv to stdout.
_READ_FILES = """
import sys
for name in sys.argv[1:]:
    with open(name, "rb") as file:
        sys.stdout.buffer.write(file.read())
"""


def database_file_bytes(paths: Iterable[Path]) -> bytes:
    """Return the joined bytes of those ``paths`` that exist, read by a child process.

    A live SQLite database must not be opened and closed in this process other than through
    SQLite: POSIX locks belong to the process, so closing any descriptor of a file drops the
    locks that every SQLite connection of the process holds on it. Another process could then
    take the database for unused, checkpoint it and remove the WAL under those connections,
    which later fail with "disk I/O error" (https://www.sqlite.org/howtocorrupt.html).
    """
    existing = [str(path) for path in paths if path.exists()]
    child = subprocess.run(
        [sys.executable, "-c", _READ_FILES, *existing], capture_output=True, check=True
    )
    return child.stdout


@contextmanager
def database_of_its_own(sqlite_path: Path) -> Iterator[str]:
    """Yield the URL of a new, empty database: on PostgreSQL when the tests run there, else a
    SQLite file at ``sqlite_path``. A PostgreSQL database is dropped afterwards."""
    if not POSTGRES_URL:
        yield f"sqlite:///{sqlite_path}"
        return
    base = (
        make_url(POSTGRES_URL)
        .set(drivername="postgresql+psycopg")
        .render_as_string(hide_password=False)
    )
    url = _create_postgres_database(base)
    try:
        yield url
    finally:
        _drop_postgres_database(base, url)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with database_of_its_own(tmp_path_factory.mktemp("db") / "llero.db") as url:
        yield url


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def database(migrated_database: Database) -> Iterator[Database]:
    """The session's migrated database, emptied after each test.

    The session factory's ``info`` is restored too, because create_app attaches the audit keys
    to it, and a test of missing keys must not find keys that an earlier test attached.
    """
    info = dict(migrated_database.sessions.kw.get("info") or {})
    yield migrated_database
    migrated_database.sessions.configure(info=info)
    with migrated_database.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            # The generation row is made by its migration; the triggers count the deletes.
            if table.name != "config_generation":
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
        # Many tests send bursts from one test client, which the default limits would stop.
        # tests/web/test_rate_limits.py switches them on.
        rate_limit_enabled=False,
    )


@dataclass(frozen=True)
class FixtureUser:
    """A user made for a test, with an access token issued to it."""

    id: int
    email: str
    role: Role
    access_token: str
    session_id: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


MakeUser = Callable[..., FixtureUser]


def create_test_user(
    app: FastAPI,
    *,
    role: Role = Role.ADMIN,
    status: UserStatus = UserStatus.ACTIVE,
    mfa: bool = True,
    email: str | None = None,
    password_hash: str | None = None,
) -> FixtureUser:
    """Create a user through the identity service and issue it an access token.

    ``mfa`` stores a TOTP seed, as a confirmed enrollment would. The password hash is given
    ready-made, because hashing costs a few hundred milliseconds per user.
    """
    context: IdentityContext = app.state.identity
    database: Database = app.state.database
    address = email or f"{role}-{secrets.token_hex(4)}@example.com"
    now = context.now()
    with database.transaction() as session:
        # Stored directly rather than through create_user, so a fixture user leaves no audit
        # record: tests of the trail see only the events they cause.
        keys = email_keys_of(session, address)
        user = User(
            email_key=keys.email_key,
            email_skeleton_key=keys.skeleton_key,
            email_upper_skeleton_key=keys.upper_skeleton_key,
            display_name=f"Test {role}",
            role=Role(role),
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        session.flush()
        user.email = address
        user.status = status
        user.password_hash = password_hash
        if mfa:
            user.totp_seed = new_totp_seed().reveal()
            user.mfa_enabled_at = now
        session.flush()
        user_id = user.id
        # A sign-in session of its own, because every access token names one.
        issued = start_session(session, context, user, ClientInfo.of("pytest", "127.0.0.1"))
    return FixtureUser(user_id, address, role, issued.access_token.reveal(), issued.session_id)


def with_mail(base: Settings, server: MailServer, **options: object) -> Settings:
    """Return ``base`` with mail sent to ``server`` over plain SMTP, and ``options`` on top."""
    values: dict[str, object] = {
        "public_url": "https://llero.example.com",
        "smtp_host": LOOPBACK,
        "smtp_port": server.port,
        "smtp_security": "none",
        "smtp_from": "llero@example.com",
    }
    values.update(options)
    return Settings(_env_file=None, **{**base.model_dump(exclude_unset=True), **values})  # type: ignore[call-arg]


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    """An SMTP server on 127.0.0.1 that keeps the mail it receives, without TLS."""
    server = MailServer()
    yield server
    server.stop()


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    return create_app(settings, database)


@pytest.fixture
def developer(make_user: MakeUser) -> FixtureUser:
    """A developer with a second factor; modules that need another kind define their own."""
    return make_user(role=Role.DEVELOPER)


@pytest.fixture
def make_user(app: FastAPI) -> MakeUser:
    """Return a function that creates a user of the given role and state in ``app``."""

    def make(**options: object) -> FixtureUser:
        return create_test_user(app, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def admin(make_user: MakeUser) -> FixtureUser:
    return make_user(role=Role.ADMIN, email="admin@example.com")


@pytest.fixture
def client(app: FastAPI, admin: FixtureUser) -> Iterator[TestClient]:
    """A client signed in as an admin with a second factor, allowed every permission."""
    with TestClient(app, raise_server_exceptions=False, headers=admin.headers) as test_client:
        yield test_client


@pytest.fixture
def anonymous_client(app: FastAPI) -> Iterator[TestClient]:
    """A client that sends no credential."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
