"""A restore drill: data made through the API, backed up, restored into a fresh data directory,
and served again with the audit chain intact. Damaged backups and occupied targets are refused.

With LLERO_TEST_DATABASE_URL set, the drill dumps PostgreSQL with pg_dump and restores it with
pg_restore into a new, empty database.
"""

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.audit.events import AuditEvent
from llero.cli.main import cli
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.storage.db import Database
from llero.vault.models import SecretKind
from llero.vault.service import VaultService
from llero.web.app import create_app
from tests.conftest import (
    POSTGRES_URL,
    FixtureUser,
    MakeUser,
    _create_postgres_database,
    _drop_postgres_database,
)
from tests.forge.tool_helpers import create_tool
from tests.incident.helpers import audit_records

SECRET_VALUE = "sk-planted-provider-key-7f3a9c2e51d04b86"
TOOL_NAME = "planted_weather_lookup"
USER_EMAIL = "planted.viewer@example.com"


def llero(environ: dict[str, str], *arguments: str) -> Result:
    return CliRunner().invoke(cli, list(arguments), env=environ, input="")


@pytest.fixture
def environ(
    data_dir: Path, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {"LLERO_DATA_DIR": str(data_dir), "LLERO_DATABASE_URL": database.url}


@pytest.fixture
def restore_url(tmp_path: Path) -> Iterator[str]:
    """An empty database for the restore: a new PostgreSQL database, or a new SQLite file."""
    if not POSTGRES_URL:
        yield f"sqlite:///{tmp_path / 'restored' / 'llero.db'}"
        return
    base = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    url = _create_postgres_database(base)
    yield url
    _drop_postgres_database(base, url)


def _populate(client: TestClient, app: FastAPI, make_user: MakeUser) -> tuple[int, int]:
    tool = create_tool(client, TOOL_NAME)
    created = client.post(
        "/api/users", json={"email": USER_EMAIL, "display_name": "Planted", "role": "viewer"}
    )
    assert created.status_code == 201, created.text
    make_user(role=Role.DEVELOPER)
    vault = VaultService(app.state.database, app.state.keyring)
    stored = vault.create_secret(
        name="openai", kind=SecretKind.PROVIDER_API_KEY, value=Secret(SECRET_VALUE)
    )
    return tool["id"], stored.secret_id


def _backup(environ: dict[str, str], path: Path) -> Result:
    result = llero(environ, "backup", "--output", str(path))
    assert result.exit_code == 0, result.output
    return result


def _restore_environ(tmp_path: Path, restore_url: str) -> dict[str, str]:
    return {"LLERO_DATA_DIR": str(tmp_path / "restored"), "LLERO_DATABASE_URL": restore_url}


def test_restore_drill_serves_same_data(
    *,
    environ: dict[str, str],
    client: TestClient,
    app: FastAPI,
    admin: FixtureUser,
    make_user: MakeUser,
    tmp_path: Path,
    restore_url: str,
) -> None:
    tool_id, secret_id = _populate(client, app, make_user)
    users_before = client.get("/api/users").json()
    backup_file = tmp_path / "drill.backup"
    _backup(environ, backup_file)

    restore_environ = _restore_environ(tmp_path, restore_url)
    restored = llero(restore_environ, "restore", str(backup_file), "--key-file", _key(environ))

    assert restored.exit_code == 0, restored.output
    assert "audit chain ok:" in restored.stdout
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "restored",
        database_url=restore_url,
        allowed_hosts=["testserver"],
    )
    restored_database = Database(restore_url)
    try:
        restored_app = create_app(settings, restored_database)
        # The signing keys came back too, so the admin's token from before still works.
        with TestClient(restored_app, headers=admin.headers) as restored_client:
            assert restored_client.get(f"/api/tools/{tool_id}").json()["name"] == TOOL_NAME
            assert restored_client.get("/api/users").json() == users_before
        vault = VaultService(restored_database, restored_app.state.keyring)
        assert vault.read_plaintext(secret_id).reveal() == SECRET_VALUE
        assert len(audit_records(restored_database, AuditEvent.BACKUP_RESTORED)) == 1
    finally:
        restored_database.dispose()


def test_backup_contains_no_planted_values(
    *,
    environ: dict[str, str],
    client: TestClient,
    app: FastAPI,
    admin: FixtureUser,
    make_user: MakeUser,
    tmp_path: Path,
    data_dir: Path,
) -> None:
    _populate(client, app, make_user)
    backup_file = tmp_path / "plain.backup"

    result = _backup(environ, backup_file)

    content = backup_file.read_bytes()
    master_key = (data_dir / "keys" / "master.key").read_bytes().strip()
    planted = [
        SECRET_VALUE,
        TOOL_NAME,
        USER_EMAIL,
        admin.access_token,
        master_key.decode(),
        base64.b64decode(master_key).hex(),
        "SQLite format 3",
    ]
    for value in planted:
        assert value.encode() not in content, value
        assert value not in result.output, value
    assert (backup_file.stat().st_mode & 0o777) == 0o600


def test_backup_records_event_and_checksum(
    environ: dict[str, str], client: TestClient, database: Database, tmp_path: Path
) -> None:
    backup_file = tmp_path / "sum.backup"

    result = _backup(environ, backup_file)

    sha256 = result.stdout.split("sha256 ")[1].strip()
    sidecar = (tmp_path / "sum.backup.sha256").read_text()
    assert sidecar == f"{sha256}  sum.backup\n"
    (recorded,) = audit_records(database, AuditEvent.BACKUP_CREATED)
    assert recorded["actor"] == ("system", "cli")
    assert sha256 in recorded["detail"]


def test_backup_verify_accepts_intact_file(
    environ: dict[str, str], client: TestClient, tmp_path: Path
) -> None:
    backup_file = tmp_path / "ok.backup"
    _backup(environ, backup_file)

    result = llero(environ, "backup", "verify", str(backup_file))

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"backup ok: {backup_file} made ")


def test_backup_refuses_existing_output(
    environ: dict[str, str], client: TestClient, tmp_path: Path
) -> None:
    backup_file = tmp_path / "taken.backup"
    backup_file.write_bytes(b"keep me")

    result = llero(environ, "backup", "--output", str(backup_file))

    assert result.exit_code == 2
    assert result.stderr.endswith(f"llero: {backup_file} already exists; choose a new file name\n")
    assert backup_file.read_bytes() == b"keep me"


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_damaged_backup_refused_by_verify_and_restore(
    environ: dict[str, str], client: TestClient, tmp_path: Path, restore_url: str, damage: str
) -> None:
    backup_file = tmp_path / "damaged.backup"
    _backup(environ, backup_file)
    (tmp_path / "damaged.backup.sha256").unlink()
    if damage == "flipped":
        _flip_byte(backup_file, backup_file.stat().st_size // 2)
    else:
        backup_file.write_bytes(backup_file.read_bytes()[:-100])

    verified = llero(environ, "backup", "verify", str(backup_file))
    restored = llero(
        _restore_environ(tmp_path, restore_url),
        "restore",
        str(backup_file),
        "--key-file",
        _key(environ),
    )

    assert verified.exit_code == 2
    assert "llero: chunk " in verified.stderr
    assert "failed authentication: the file was changed, reordered or cut short" in verified.stderr
    assert restored.exit_code == 2
    assert not (tmp_path / "restored").exists()


def test_backup_verify_detects_checksum_mismatch(
    environ: dict[str, str], client: TestClient, tmp_path: Path
) -> None:
    backup_file = tmp_path / "sum.backup"
    _backup(environ, backup_file)
    (tmp_path / "sum.backup.sha256").write_text("0" * 64 + "  sum.backup\n")

    result = llero(environ, "backup", "verify", str(backup_file))

    assert result.exit_code == 2
    assert "the SHA-256 of sum.backup differs from sum.backup.sha256" in result.stderr


def test_restore_refuses_non_empty_data_dir(
    environ: dict[str, str], client: TestClient, tmp_path: Path, restore_url: str
) -> None:
    backup_file = tmp_path / "full.backup"
    _backup(environ, backup_file)
    target = tmp_path / "restored"
    target.mkdir()
    (target / "notes.txt").write_text("keep")

    result = llero(
        _restore_environ(tmp_path, restore_url),
        "restore",
        str(backup_file),
        "--key-file",
        _key(environ),
    )

    assert result.exit_code == 2
    assert f"refusing to restore into {target}: it is not empty" in result.stderr
    assert sorted(path.name for path in target.iterdir()) == ["notes.txt"]


def test_restore_with_wrong_key_refused(
    environ: dict[str, str], client: TestClient, tmp_path: Path, restore_url: str
) -> None:
    backup_file = tmp_path / "key.backup"
    _backup(environ, backup_file)
    restore_environ = _restore_environ(tmp_path, restore_url)
    restore_environ["LLERO_BACKUP_KEY"] = base64.b64encode(bytes(range(32))).decode()

    result = llero(restore_environ, "restore", str(backup_file))

    assert result.exit_code == 2
    assert "the backup key does not match this backup" in result.stderr
    assert not (tmp_path / "restored").exists()


def _key(environ: dict[str, str]) -> str:
    return str(Path(environ["LLERO_DATA_DIR"]) / "keys" / "backup.key")
