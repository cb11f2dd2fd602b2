"""`llero keys status`, `rotate` and `retire` as an operator runs them, next to a running app.

The app is created before the rotation, as a server that keeps running would be, and stores
secrets, sealed email addresses and TOTP seeds, sign-in sessions and chat messages. Every test
reads them back through that app after the commands ran.
"""

import io
import json
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from llero.audit.models import AuditRecord
from llero.barracks.models import Agent
from llero.cli.keys import _Progress
from llero.cli.main import cli
from llero.command import service as chat_service
from llero.command.models import ChatSession
from llero.command.providers.base import Message
from llero.config.keyfiles import MASTER_KEY
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.storage.db import Database
from llero.vault import kek_admin, rotation
from llero.vault.keyring import load_keyring
from llero.vault.models import SecretKind, StoredSecret
from llero.vault.service import VaultService
from llero.web.app import create_app
from tests.conftest import FixtureUser
from tests.vault.conftest import (  # noqa: F401 - fixtures that the key service tests use
    REGION,
    aws_client,
    aws_environment,
    moto_endpoint,
    vault_server,
)
from tests.vault.hashicorp_server import VaultTestServer

PLANTED = "sk-live-PLANTED-keys-cli-3e4f5a6b7c8d9e0f"
PLANTED_MESSAGE = "planted chat message 5d6e7f80 about the launch codes"
SECRETS = 12


class SimulatedCrash(Exception):
    pass


@pytest.fixture(autouse=True)
def _no_retire_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retire at once after a rotation; test_retire_waits_for_servers_to_switch keeps the wait."""
    monkeypatch.setattr(kek_admin, "RETIRE_GRACE_SECONDS", 0.0)


@pytest.fixture
def environ(
    data_dir: Path, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {"LLERO_DATA_DIR": str(data_dir), "LLERO_DATABASE_URL": database.url}


def llero(environ: dict[str, str], *arguments: str, stdin: str = "") -> Result:
    return CliRunner().invoke(cli, list(arguments), env=environ, input=stdin)


def _lines(text: str) -> list[str]:
    """Return the command's own lines, without the JSON log lines that a test-wide logging setup
    may send to the same streams."""
    return [line for line in text.splitlines() if not _is_log_line(line)]


def _is_log_line(line: str) -> bool:
    return line.startswith('{"') and '"timestamp": ' in line


def _status(environ: dict[str, str]) -> dict[str, Any]:
    result = llero(environ, "keys", "status", "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads("\n".join(_lines(result.stdout)))
    return document


def _by_state(status: dict[str, Any]) -> dict[str, str]:
    return {kek["id"]: kek["state"] for kek in status["keks"]}


def _kek_ids_in(status: dict[str, Any]) -> set[str]:
    return {kek_id for counts in status["columns"].values() for kek_id in counts}


def _audit_events(database: Database) -> list[tuple[str, str | None, dict[str, Any]]]:
    with database.reader() as session:
        rows = session.execute(
            select(AuditRecord.event, AuditRecord.target_id, AuditRecord.detail)
            .where(AuditRecord.event.like("kek:%"))
            .order_by(AuditRecord.sequence)
        ).all()
    return [(event, target, json.loads(detail or "null")) for event, target, detail in rows]


@pytest.fixture
def stored(app: FastAPI, client: TestClient, admin: FixtureUser, environ: dict[str, str]) -> int:
    """Store secrets through the CLI and a chat session through the app; return the chat id.

    The admin behind ``client`` has a sealed email address, TOTP seed and sign-in session.
    """
    for index in range(SECRETS):
        created = llero(environ, "secrets", "create", f"key-{index:02d}", stdin=_value(index))
        assert created.exit_code == 0, created.output
    database: Database = app.state.database
    with database.transaction() as session:
        agent = Agent(name="helper", provider="local", model="m", owner_user_id=admin.id)
        session.add(agent)
        session.flush()
        chat = ChatSession(owner_user_id=admin.id, agent_id=agent.id, title="t")
        session.add(chat)
        session.flush()
        for role, content in (("user", PLANTED_MESSAGE), ("assistant", "noted")):
            message = Message(role=role, content=content)  # type: ignore[arg-type]
            chat_service.append_message(session, app.state.keyring, chat.id, message)
        chat_id: int = chat.id
    return chat_id


@dataclass(frozen=True)
class Running:
    """The app as a running server, a client signed in to it, and the records it serves."""

    app: FastAPI
    client: TestClient
    admin: FixtureUser
    chat_id: int


@pytest.fixture
def running(app: FastAPI, client: TestClient, admin: FixtureUser, stored: int) -> Running:
    return Running(app, client, admin, stored)


def _value(index: int) -> str:
    return f"{PLANTED}-{index:02d}"


def _secret_ids(database: Database) -> list[int]:
    """Return the ids of the secrets that ``stored`` created, in the order of their values."""
    with database.reader() as session:
        ids = session.scalars(
            select(StoredSecret.id)
            .where(StoredSecret.name.like("key-%"))
            .order_by(StoredSecret.name)
        ).all()
    assert len(ids) == SECRETS
    return list(ids)


def _assert_served(running: Running) -> None:
    _assert_served_by(running.app, running.client, running.admin, running.chat_id)


def _assert_served_by(app: FastAPI, client: TestClient, admin: FixtureUser, chat_id: int) -> None:
    """Read every kind of sealed value back through ``app``."""
    me = client.get("/api/users/me")
    assert me.status_code == 200, me.text
    assert me.json()["email"] == admin.email
    chat = client.get(f"/api/sessions/{chat_id}")
    assert chat.status_code == 200, chat.text
    assert [message["content"] for message in chat.json()["messages"]] == [PLANTED_MESSAGE, "noted"]
    vault: VaultService = app.state.vault
    values = [
        vault.read_plaintext(secret_id).reveal() for secret_id in _secret_ids(app.state.database)
    ]
    assert values == [_value(index) for index in range(SECRETS)]


def _key_material(data_dir: Path) -> list[str]:
    """Return the text of every KEK file, which no output may contain."""
    keys = data_dir / "keys"
    texts = [(keys / MASTER_KEY).read_text().strip()]
    texts += [path.read_text().strip() for path in (keys / "kek").glob("*.key")]
    return texts


def _assert_nothing_secret(results: list[Result], data_dir: Path) -> None:
    material = _key_material(data_dir)
    for result in results:
        assert PLANTED not in result.output
        assert PLANTED_MESSAGE not in result.output
        for text in material:
            assert text not in result.output


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_rotate_rewraps_records_while_app_serves(
    running: Running, environ: dict[str, str], data_dir: Path, database: Database
) -> None:
    app = running.app
    base_id = app.state.keyring.current.id
    before = _status(environ)
    secret_ids = _secret_ids(database)
    failures: list[Exception] = []
    serving, stop = threading.Event(), threading.Event()
    served = [0]

    def serve() -> None:
        # A server that loaded its keyring before the rotation keeps reading and writing.
        vault: VaultService = app.state.vault
        try:
            while not stop.is_set():
                index = served[0] % SECRETS
                assert vault.read_plaintext(secret_ids[index]).reveal() == _value(index)
                vault.create_secret(
                    name=f"during-{served[0]}",
                    kind=SecretKind.GENERIC,
                    value=Secret(f"written-during-{served[0]:06d}"),
                )
                served[0] += 1
                serving.set()
        except Exception as error:  # noqa: BLE001 - the test thread reports every failure
            failures.append(error)

    worker = threading.Thread(target=serve)
    worker.start()
    try:
        assert serving.wait(timeout=30)
        served_before = served[0]
        rotated = llero(environ, "keys", "rotate", "--batch-size", "2")
        served_during = served[0] - served_before
    finally:
        stop.set()
        worker.join()
    # Secrets that the app sealed under the old KEK after the rotation had passed them, before
    # it switched to the new KEK, are left for a second run, which resumes instead of adding.
    if _status(environ)["pending"]:
        resumed = llero(environ, "keys", "rotate")
        assert resumed.exit_code == 0, resumed.output
        assert _lines(resumed.stdout)[0].startswith("resuming the rotation to KEK ")
    after = _status(environ)

    assert rotated.exit_code == 0, rotated.output
    assert failures == []
    assert served_during > 0
    new_id = after["current"]
    assert new_id != base_id
    assert _lines(rotated.stdout)[0] == f"added KEK {new_id} (version 2), now current"
    assert _lines(rotated.stdout)[1].startswith("re-wrapped ")
    assert _lines(rotated.stdout)[1].endswith(f" batches to KEK {new_id}")
    # Whether the app sealed records under the old KEK after the batches passed depends on
    # timing, so the advice about the old KEK may be either.
    assert _lines(rotated.stdout)[2].startswith(f"KEK {base_id} ")
    progress = _lines(rotated.stderr)
    assert progress[0].startswith("re-wrapped 2 of ")
    assert progress[-1].startswith("re-wrapped ")
    assert "(100%)" in progress[-1]

    assert before["current"] == base_id
    assert before["pending"] == 0
    assert _kek_ids_in(before) == {base_id}
    for column in (
        "secret_versions",
        "secret_keys",
        "users.email_envelope",
        "users.totp_seed_envelope",
        "auth_sessions.user_agent_envelope",
        "chat_messages.body_envelope",
    ):
        assert before["columns"][column][base_id] >= 1, column
    assert before["columns"]["secret_versions"][base_id] == SECRETS
    assert _kek_ids_in(after) == {new_id}
    assert after["pending"] == 0
    assert _by_state(after) == {base_id: "active", new_id: "current"}
    assert after["columns"]["secret_versions"][new_id] == SECRETS + served[0]
    assert _mode(data_dir / "keys" / "kek" / f"{new_id}.key") == 0o600
    assert _mode(data_dir / "keys" / "kek") == 0o700
    assert _mode(data_dir / "keys" / "kek" / "manifest.json") == 0o600
    _assert_served(running)
    _assert_nothing_secret([rotated], data_dir)


def test_status_lists_keks_and_columns(
    environ: dict[str, str], app: FastAPI, stored: int, data_dir: Path
) -> None:
    base_id = app.state.keyring.current.id

    result = llero(environ, "keys", "status")

    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert lines[0].split() == ["KEK", "VERSION", "SOURCE", "STATE", "CREATED", "RECORDS"]
    assert lines[1].split()[:4] == [base_id, "1", "base", "current"]
    assert [line.split()[:2] for line in lines if line.startswith("secret_versions")] == [
        ["secret_versions", base_id]
    ]
    assert lines[-1] == f"every record is wrapped by the current KEK {base_id}"
    _assert_nothing_secret([result], data_dir)


def test_interrupted_rotation_resumes_same_kek(
    running: Running,
    environ: dict[str, str],
    database: Database,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = running.app
    base_id = app.state.keyring.current.id
    real_rewrap = rotation.rewrap  # type: ignore[attr-defined]
    calls = [0]

    def crashing_rewrap(*arguments: Any) -> bytes:
        # The process dies in the middle of the fourth batch of three records.
        if calls[0] == 10:
            raise SimulatedCrash
        calls[0] += 1
        return real_rewrap(*arguments)  # type: ignore[no-any-return]

    monkeypatch.setattr(rotation, "rewrap", crashing_rewrap)
    crashed = llero(environ, "keys", "rotate", "--batch-size", "3")
    monkeypatch.undo()
    monkeypatch.setattr(kek_admin, "RETIRE_GRACE_SECONDS", 0.0)
    interrupted = _status(environ)
    new_id = interrupted["current"]
    refused = llero(environ, "keys", "retire", base_id)
    resumed = llero(environ, "keys", "rotate", "--batch-size", "3")
    after = _status(environ)
    retired = llero(environ, "keys", "retire", base_id)
    final = _status(environ)

    assert isinstance(crashed.exception, SimulatedCrash)
    # Three batches of three were committed; the fourth was rolled back.
    assert interrupted["columns"]["secret_versions"] == {new_id: 9, base_id: SECRETS - 9}
    remaining = interrupted["pending"]
    assert remaining > SECRETS - 9
    assert refused.exit_code == 2
    assert _lines(refused.stderr) == [
        f"llero: KEK {base_id} still wraps {remaining} records; run `llero keys rotate` to "
        "re-wrap them, then retire it"
    ]
    assert resumed.exit_code == 0, resumed.output
    assert _lines(resumed.stdout)[0] == (
        f"resuming the rotation to KEK {new_id}: {remaining} records left"
    )
    assert after["current"] == new_id
    assert set(_by_state(after)) == {base_id, new_id}
    assert _kek_ids_in(after) == {new_id}
    assert retired.exit_code == 0, retired.output
    assert _lines(retired.stdout) == [f"retired KEK {base_id} (version 1)"]
    assert _by_state(final) == {base_id: "retired", new_id: "current"}
    # The refused retirement left no record: its audit record is written only for a change.
    assert [(event, target) for event, target, _ in _audit_events(database)] == [
        ("kek:added", new_id),
        ("kek:rotation_started", new_id),
        ("kek:status_viewed", None),
        ("kek:rotation_started", new_id),
        ("kek:rotation_finished", new_id),
        ("kek:status_viewed", None),
        ("kek:retired", base_id),
        ("kek:status_viewed", None),
    ]
    started = [detail for event, _, detail in _audit_events(database) if "started" in event]
    assert started[0]["resumed"] is False
    assert started[1] == {"pending": remaining, "resumed": True}
    app.state.keyring.refresh()
    assert app.state.keyring.ids == (new_id,)
    _assert_served(running)
    _assert_nothing_secret([crashed, refused, resumed, retired], data_dir)


def test_rotate_with_retire_retires_old_keks(
    running: Running, environ: dict[str, str], data_dir: Path
) -> None:
    app = running.app
    base_id = app.state.keyring.current.id

    first = llero(environ, "keys", "rotate", "--retire")
    second_id = _status(environ)["current"]
    second = llero(environ, "keys", "rotate", "--retire")
    status = _status(environ)
    third_id = status["current"]

    assert first.exit_code == 0, first.output
    assert _lines(first.stdout)[-1] == f"retired KEK {base_id} (version 1)"
    assert second.exit_code == 0, second.output
    assert _lines(second.stdout)[-1] == f"retired KEK {second_id} (version 2)"
    assert _by_state(status) == {base_id: "retired", second_id: "retired", third_id: "current"}
    assert _kek_ids_in(status) == {third_id}
    assert not (data_dir / "keys" / "kek" / f"{second_id}.key").exists()
    _assert_served(running)
    restarted = create_app(app.state.settings, app.state.database)
    assert restarted.state.keyring.ids == (third_id,)
    with TestClient(restarted, headers=running.admin.headers) as fresh_client:
        _assert_served_by(restarted, fresh_client, running.admin, running.chat_id)


def test_records_sealed_late_resume_rotation(
    running: Running, environ: dict[str, str], data_dir: Path, database: Database
) -> None:
    stale = load_keyring(data_dir / "keys")
    base_id = stale.current.id
    assert llero(environ, "keys", "rotate").exit_code == 0
    new_id = _status(environ)["current"]
    # A server that has not switched to the new KEK yet seals a secret under the old one.
    late_vault = VaultService(database, stale)
    late_vault.create_secret(name="late", kind=SecretKind.GENERIC, value=Secret(PLANTED))

    late = _status(environ)
    refused = llero(environ, "keys", "retire", base_id)
    rotated = llero(environ, "keys", "rotate", "--retire")
    after = _status(environ)

    assert late["pending"] == 2
    assert refused.exit_code == 2
    assert "still wraps 2 records" in refused.stderr
    assert rotated.exit_code == 0, rotated.output
    assert _lines(rotated.stdout) == [
        f"resuming the rotation to KEK {new_id}: 2 records left",
        f"re-wrapped 2 records in 2 batches to KEK {new_id}",
        f"retired KEK {base_id} (version 1)",
    ]
    assert _by_state(after) == {base_id: "retired", new_id: "current"}
    assert _kek_ids_in(after) == {new_id}
    _assert_served(running)


def test_progress_redraws_one_line_on_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    progress = _Progress(4, terminal)

    progress.advance("secret_versions", 2)
    progress.advance("secret_keys", 2)
    progress.close()

    assert terminal.getvalue() == (
        "\rre-wrapped 2 of 4 records (50%), at secret_versions"
        "\rre-wrapped 4 of 4 records (100%), at secret_keys"
        "\rre-wrapped 4 of 4 records (100%), at secret_keys\n"
    )


def test_retire_refusals_name_the_reason(
    environ: dict[str, str], app: FastAPI, stored: int
) -> None:
    base_id = app.state.keyring.current.id

    current = llero(environ, "keys", "retire", base_id)
    unknown = llero(environ, "keys", "retire", "0123456789abcdef")
    malformed = llero(environ, "keys", "retire", "../../master")

    assert current.exit_code == 2
    assert _lines(current.stderr) == [
        f"llero: KEK {base_id} is the current KEK; run `llero keys rotate` to replace it first"
    ]
    assert unknown.exit_code == 2
    assert _lines(unknown.stderr) == [
        "llero: KEK 0123456789abcdef not found; `llero keys status` lists the KEKs"
    ]
    assert malformed.exit_code == 2
    assert "must be 16 lower-case hex digits" in malformed.stderr


def test_retire_waits_for_servers_to_switch(
    environ: dict[str, str], app: FastAPI, stored: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kek_admin, "RETIRE_GRACE_SECONDS", 1.5)
    base_id = app.state.keyring.current.id
    started = time.monotonic()

    rotated = llero(environ, "keys", "rotate", "--retire")

    assert rotated.exit_code == 0, rotated.output
    assert _lines(rotated.stdout)[-1] == f"retired KEK {base_id} (version 1)"
    assert time.monotonic() - started >= 1.5


def test_commands_fail_closed_without_audit(
    environ: dict[str, str], app: FastAPI, stored: int, data_dir: Path, database: Database
) -> None:
    base_id = app.state.keyring.current.id
    assert llero(environ, "keys", "rotate").exit_code == 0
    rotated_to = _status(environ)["current"]
    manifest_before = (data_dir / "keys" / "kek" / "manifest.json").read_text()
    files_before = sorted(path.name for path in (data_dir / "keys" / "kek").iterdir())

    with database.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE audit_events RENAME TO audit_events_away")
    try:
        status = llero(environ, "keys", "status")
        rotate = llero(environ, "keys", "rotate")
        retire = llero(environ, "keys", "retire", base_id)
    finally:
        with database.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE audit_events_away RENAME TO audit_events")

    for result in (status, rotate, retire):
        assert result.exit_code != 0
    assert "KEK" not in status.stdout
    assert _lines(rotate.stdout) == []
    assert (data_dir / "keys" / "kek" / "manifest.json").read_text() == manifest_before
    assert sorted(path.name for path in (data_dir / "keys" / "kek").iterdir()) == files_before
    after = _status(environ)
    assert after["current"] == rotated_to
    assert _by_state(after)[base_id] == "active"


def test_rotate_with_sealed_vault_changes_nothing(
    environ: dict[str, str], data_dir: Path, stored: int
) -> None:
    (data_dir / "keys" / MASTER_KEY).unlink()

    result = llero(environ, "keys", "rotate")

    assert result.exit_code == 2
    assert "the vault is sealed" in result.stderr
    assert not (data_dir / "keys" / "kek" / "manifest.json").exists()


def _external_environ(
    request: pytest.FixtureRequest, source: str, data_dir: Path, database: Database
) -> dict[str, str]:
    """Return the environment of an installation whose base KEK the key service wraps."""
    environ = {
        "LLERO_DATA_DIR": str(data_dir),
        "LLERO_DATABASE_URL": database.url,
        "LLERO_VAULT_KEK_SOURCE": source,
    }
    if source == "hashicorp_transit":
        server: VaultTestServer = request.getfixturevalue("vault_server")
        environ["LLERO_HASHICORP_URL"] = server.url
        environ["LLERO_HASHICORP_TOKEN"] = server.new_token()
        return environ
    endpoint: str = request.getfixturevalue("moto_endpoint")
    kms: Any = aws_client(endpoint, "kms")
    environ["LLERO_AWS_REGION"] = REGION
    environ["LLERO_AWS_ENDPOINT_URL"] = endpoint
    environ["LLERO_AWS_KMS_KEY_ID"] = kms.create_key()["KeyMetadata"]["KeyId"]
    return environ


@pytest.mark.parametrize("source", ["hashicorp_transit", "aws_kms"])
def test_rotation_under_key_service_wraps_new_kek(
    request: pytest.FixtureRequest, source: str, database: Database, tmp_path: Path
) -> None:
    data_dir = tmp_path / "external-data"
    environ = _external_environ(request, source, data_dir, database)
    assert llero(environ, "init").exit_code == 0
    created = llero(environ, "secrets", "create", "openai", stdin=PLANTED)
    base_id = _status(environ)["current"]

    rotated = llero(environ, "keys", "rotate", "--retire")
    status = _status(environ)
    settings = Settings(_env_file=None, **_settings_of(environ))  # type: ignore[call-arg]
    restarted = create_app(settings, database)

    assert created.exit_code == 0, created.output
    assert rotated.exit_code == 0, rotated.output
    new_id = status["current"]
    assert _by_state(status) == {base_id: "retired", new_id: "current"}
    assert [kek["source"] for kek in status["keks"]] == ["base", "wrapped"]
    assert _kek_ids_in(status) == {new_id}
    kek_dir = data_dir / "keys" / "kek"
    wrapped = kek_dir / f"{new_id}.key.wrapped"
    assert json.loads(wrapped.read_text())["source"] == source
    assert _mode(wrapped) == 0o600
    assert list(kek_dir.glob("*.key")) == []
    assert not (data_dir / "keys" / MASTER_KEY).exists()
    assert restarted.state.keyring.ids == (new_id,)
    again = llero(environ, "keys", "rotate", "--retire")
    assert again.exit_code == 0, again.output
    assert not wrapped.exists()
    assert len(list(kek_dir.glob("*.key.wrapped"))) == 1
    vault: VaultService = restarted.state.vault
    with database.reader() as session:
        secret_id = session.scalars(select(StoredSecret.id)).one()
    assert vault.read_plaintext(secret_id).reveal() == PLANTED
    for result in (created, rotated):
        assert PLANTED not in result.output


def _settings_of(environ: dict[str, str]) -> dict[str, str]:
    return {name.removeprefix("LLERO_").lower(): value for name, value in environ.items()}
