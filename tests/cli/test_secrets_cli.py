"""`llero secrets create`, `list`, `rotate` and `delete` as an operator runs them: the value from
standard input or a file, never from an argument, and never printed back."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from llero.audit.service import AuditFilter, query
from llero.cli.main import cli
from llero.config.keyfiles import MASTER_KEY
from llero.storage.db import Database
from llero.vault.keyring import load_keyring
from llero.vault.models import StoredSecret
from llero.vault.service import VaultService

PLANTED = "sk-live-PLANTED-cli-1a2b3c4d5e6f7a8b9c0d"
ROTATED = "sk-live-PLANTED-cli-rotated-0f9e8d7c6b5a"


@pytest.fixture
def environ(
    data_dir: Path, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {"LLERO_DATA_DIR": str(data_dir), "LLERO_DATABASE_URL": database.url}


def llero(environ: dict[str, str], *arguments: str, stdin: str = "") -> Result:
    return CliRunner().invoke(cli, list(arguments), env=environ, input=stdin)


def _printed(result: Result) -> list[str]:
    """Return the command's own output lines, without log lines that a test-wide logging setup
    may send to standard output too."""
    return [line for line in result.stdout.splitlines() if "vault_" not in line]


def _read(data_dir: Path, database: Database, name: str) -> str:
    with database.reader() as session:
        secret_id = session.scalar(select(StoredSecret.id).where(StoredSecret.name == name))
    assert secret_id is not None
    vault = VaultService(database, load_keyring(data_dir / "keys"))
    return vault.read_plaintext(secret_id).reveal()


def test_create_from_stdin_list_rotate_delete(
    environ: dict[str, str], data_dir: Path, database: Database, tmp_path: Path
) -> None:
    created = llero(
        environ, "secrets", "create", "openai-prod", "--kind", "provider_api_key",
        stdin=PLANTED + "\n",
    )  # fmt: skip
    value_file = tmp_path / "value.txt"
    value_file.write_text(ROTATED + "\n")
    rotated = llero(environ, "secrets", "rotate", "openai-prod", "--value-file", str(value_file))
    listed = llero(environ, "secrets", "list")
    after_rotation = _read(data_dir, database, "openai-prod")
    deleted = llero(environ, "secrets", "delete", "openai-prod")
    after_delete = llero(environ, "secrets", "list")

    assert created.exit_code == 0, created.output
    (created_line,) = _printed(created)
    secret_id = created_line.split()[1]
    assert created_line.startswith(f"created {secret_id}\topenai-prod\tprovider_api_key\t")
    assert "\tversion 1\t…" in created_line
    assert rotated.exit_code == 0, rotated.output
    assert "version 2" in _printed(rotated)[0]
    assert after_rotation == ROTATED
    assert _printed(listed)[0].endswith(f"…{ROTATED[-4:]}\texpires never")
    assert deleted.exit_code == 0
    assert _printed(deleted) == [f"deleted secret {secret_id}"]
    assert _printed(after_delete) == []
    for result in (created, rotated, listed, deleted):
        assert PLANTED not in result.output
        assert ROTATED not in result.output


def test_stdin_newline_not_part_of_value(
    environ: dict[str, str], data_dir: Path, database: Database
) -> None:
    llero(environ, "secrets", "create", "hook", "--kind", "webhook_signing_key", stdin="abc\n")

    assert _read(data_dir, database, "hook") == "abc"


def test_create_audited_as_cli(environ: dict[str, str], database: Database) -> None:
    llero(environ, "secrets", "create", "audited", stdin=PLANTED)

    with database.reader() as session:
        (record,) = query(session, AuditFilter(target_kind="secret")).records
    assert record.event == "secret:created"
    assert (record.actor_kind, record.actor_id) == ("system", "cli")
    assert json.loads(record.detail) == {"kind": "generic", "name": "audited", "version": 1}


def test_value_not_accepted_as_argument(environ: dict[str, str]) -> None:
    result = llero(environ, "secrets", "create", "argv-key", PLANTED, stdin="")

    assert result.exit_code == 2
    assert "unexpected extra argument" in result.output.lower()


def test_empty_value_rejected(environ: dict[str, str]) -> None:
    result = llero(environ, "secrets", "create", "empty", stdin="\n")

    assert result.exit_code == 2
    assert "the value is empty; pipe it on standard input or pass --value-file" in result.output


def test_unknown_secret_named(environ: dict[str, str]) -> None:
    result = llero(environ, "secrets", "rotate", "missing", stdin=ROTATED)

    assert result.exit_code == 2
    assert "secret 'missing' not found" in result.output


def test_sealed_vault_stops_command(environ: dict[str, str], data_dir: Path) -> None:
    (data_dir / "keys" / MASTER_KEY).unlink()

    result = llero(environ, "secrets", "create", "sealed", stdin=PLANTED)

    assert result.exit_code == 2
    assert "the vault is sealed" in result.output
    assert PLANTED not in result.output
