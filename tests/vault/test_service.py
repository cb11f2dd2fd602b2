"""Secrets through the vault service: values stored only as envelopes, an envelope moved to another
row does not open, destroyed versions cannot be read, and a planted value appears nowhere."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from llero.config.keyfiles import create_key_files, make_private_dir
from llero.config.settings import LogFormat, Settings
from llero.crypto import Secret
from llero.errors import Conflict, InvalidInput, NotFound, Refused
from llero.logs import configure_logging
from llero.storage.base import utc_now
from llero.storage.db import Database
from llero.vault import service
from llero.vault.errors import CiphertextInvalid, InvalidReason
from llero.vault.keyring import Keyring, load_keyring
from llero.vault.models import SecretKind, SecretVersion
from llero.vault.service import VaultService
from tests.conftest import database_file_bytes
from tests.vault.conftest import PLANTED

OTHER_VALUE = "whsec-other-value-0123456789abcdef"


@pytest.fixture
def vault(database: Database, keyring: Keyring) -> VaultService:
    return VaultService(database, keyring)


def _create(vault: VaultService, name: str, value: str = PLANTED) -> int:
    return vault.create_secret(
        name=name, kind=SecretKind.PROVIDER_API_KEY, value=Secret(value)
    ).secret_id


def _envelope(database: Database, secret_id: int, version: int = 1) -> bytes:
    with database.reader() as session:
        envelope = session.scalar(
            select(SecretVersion.envelope).where(
                SecretVersion.secret_id == secret_id, SecretVersion.version == version
            )
        )
    assert envelope is not None
    return envelope


def _set_envelope(database: Database, secret_id: int, envelope: bytes) -> None:
    with database.transaction() as session:
        session.execute(
            update(SecretVersion)
            .where(SecretVersion.secret_id == secret_id)
            .values(envelope=envelope)
        )


def test_secret_round_trip(vault: VaultService) -> None:
    secret_id = _create(vault, "openai")

    value = vault.read_plaintext(secret_id)

    assert value.reveal() == PLANTED
    assert PLANTED not in repr(value)


def test_version_info_carries_hint_not_value(vault: VaultService, keyring: Keyring) -> None:
    info = vault.create_secret(
        name="openai", kind=SecretKind.PROVIDER_API_KEY, value=Secret(PLANTED)
    )

    assert info.version == 1
    assert info.hint == PLANTED[-4:]
    assert info.kek_id == keyring.current.id
    assert not info.destroyed
    assert PLANTED not in repr(info)


@pytest.mark.parametrize("value", ["short-key", "x" * 15])
def test_short_value_gets_no_hint(vault: VaultService, value: str) -> None:
    info = vault.create_secret(name="short", kind=SecretKind.GENERIC, value=Secret(value))

    assert info.hint == ""


def test_read_records_last_use(vault: VaultService) -> None:
    secret_id = _create(vault, "openai")

    vault.read_plaintext(secret_id)

    assert vault.list_versions(secret_id)[0].last_used_at is not None


def test_last_use_written_once_a_minute(
    vault: VaultService, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_id = _create(vault, "openai")
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for offset, expected in ((0, 0), (59, 0), (60, 60), (90, 60)):
        monkeypatch.setattr(
            service, "utc_now", lambda offset=offset: start + timedelta(seconds=offset)
        )

        vault.read_plaintext(secret_id)

        last_used_at = vault.list_versions(secret_id)[0].last_used_at
        assert last_used_at == start + timedelta(seconds=expected), offset


def test_add_version_becomes_current(vault: VaultService) -> None:
    secret_id = _create(vault, "openai")

    info = vault.add_version(secret_id, Secret(OTHER_VALUE))

    assert info.version == 2
    assert vault.read_plaintext(secret_id).reveal() == OTHER_VALUE
    assert vault.read_plaintext(secret_id, 1).reveal() == PLANTED
    versions = vault.list_versions(secret_id)
    assert versions[0].rotated_at is not None
    assert versions[1].rotated_at is None


def test_envelope_copied_to_other_secret_fails(vault: VaultService, database: Database) -> None:
    victim = _create(vault, "victim", PLANTED)
    attacker = _create(vault, "attacker", OTHER_VALUE)

    _set_envelope(database, attacker, _envelope(database, victim))

    with pytest.raises(CiphertextInvalid) as caught:
        vault.read_plaintext(attacker)
    assert caught.value.reason is InvalidReason.AUTHENTICATION_FAILED
    assert vault.read_plaintext(victim).reveal() == PLANTED


def test_envelope_copied_to_other_version_fails(vault: VaultService, database: Database) -> None:
    secret_id = _create(vault, "openai", PLANTED)
    vault.add_version(secret_id, Secret(OTHER_VALUE))
    with database.transaction() as session:
        session.execute(
            update(SecretVersion)
            .where(SecretVersion.secret_id == secret_id, SecretVersion.version == 2)
            .values(envelope=_envelope(database, secret_id, 1))
        )

    with pytest.raises(CiphertextInvalid):
        vault.read_plaintext(secret_id)


@pytest.mark.parametrize("damage", ["truncate", "flip_tag", "flip_wrapped_key", "empty"])
def test_damaged_stored_envelope_fails_typed(
    vault: VaultService, database: Database, damage: str
) -> None:
    secret_id = _create(vault, "openai")
    envelope = bytearray(_envelope(database, secret_id))
    if damage == "truncate":
        envelope = envelope[:40]
    elif damage == "flip_tag":
        envelope[-1] ^= 0x01
    elif damage == "flip_wrapped_key":
        envelope[20] ^= 0x01
    else:
        envelope = bytearray()
    _set_envelope(database, secret_id, bytes(envelope))

    with pytest.raises(CiphertextInvalid) as caught:
        vault.read_plaintext(secret_id)

    assert caught.value.code == "ciphertext_invalid"


def test_destroyed_version_loses_wrapped_key(vault: VaultService, database: Database) -> None:
    secret_id = _create(vault, "openai")

    info = vault.destroy_version(secret_id, 1)

    assert info.destroyed
    assert info.hint == ""
    with database.reader() as session:
        row = session.scalars(select(SecretVersion)).one()
    assert row.envelope is None
    assert row.kek_id is None
    assert row.destroyed_at is not None
    with pytest.raises(Refused, match="destroyed"):
        vault.read_plaintext(secret_id)


def test_destroy_twice_keeps_first_time(vault: VaultService) -> None:
    secret_id = _create(vault, "openai")
    first = vault.destroy_version(secret_id, 1)

    second = vault.destroy_version(secret_id, 1)

    assert second.destroyed
    assert first.destroyed_at is not None
    assert second.destroyed_at == first.destroyed_at


def test_envelope_restored_from_backup_after_destroy_is_rejected(
    vault: VaultService, database: Database
) -> None:
    secret_id = _create(vault, "openai")
    backup = _envelope(database, secret_id)
    vault.destroy_version(secret_id, 1)

    # The check constraint keeps destroyed rows without an envelope.
    with pytest.raises(IntegrityError, match=r"(?i)check"):
        _set_envelope(database, secret_id, backup)


def test_expired_version_refused(vault: VaultService) -> None:
    info = vault.create_secret(
        name="old",
        kind=SecretKind.GENERIC,
        value=Secret(PLANTED),
        expires_at=utc_now() - timedelta(seconds=1),
    )

    with pytest.raises(Refused, match="expired"):
        vault.read_plaintext(info.secret_id)


def test_duplicate_name_conflicts(vault: VaultService) -> None:
    _create(vault, "openai")

    with pytest.raises(Conflict, match="already exists"):
        _create(vault, "openai")


@pytest.mark.parametrize("name", ["", "Upper", "-dash", "a b", "x" * 65, "name/../x", "ünï"])
def test_invalid_name_rejected(vault: VaultService, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _create(vault, name)

    assert caught.value.details[0].field == "name"


@pytest.mark.parametrize("value", ["", "x" * (64 * 1024 + 1)])
def test_empty_or_huge_value_rejected(vault: VaultService, value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _create(vault, "openai", value)

    assert caught.value.details[0].field == "value"
    assert caught.value.message == "value: must be 1 to 65536 bytes"


def test_unknown_secret_not_found(vault: VaultService) -> None:
    with pytest.raises(NotFound):
        vault.read_plaintext(999)
    with pytest.raises(NotFound):
        vault.add_version(999, Secret(PLANTED))
    with pytest.raises(NotFound):
        vault.destroy_version(999, 1)


def test_unknown_version_not_found(vault: VaultService) -> None:
    secret_id = _create(vault, "openai")

    with pytest.raises(NotFound, match="version 2"):
        vault.read_plaintext(secret_id, 2)


def test_stored_under_other_keys_dir_unreadable(
    vault: VaultService, database: Database, tmp_path: Path
) -> None:
    secret_id = _create(vault, "openai")
    other_dir = tmp_path / "other" / "keys"
    make_private_dir(other_dir.parent)
    create_key_files(other_dir)

    with pytest.raises(CiphertextInvalid) as caught:
        VaultService(database, load_keyring(other_dir)).read_plaintext(secret_id)

    assert caught.value.reason is InvalidReason.UNKNOWN_KEK


# A planted value must appear nowhere outside the envelope.


def _windows(value: str, size: int = 8) -> list[bytes]:
    encoded = value.encode()
    return [encoded[index : index + size] for index in range(len(encoded) - size + 1)]


def _store_planted(vault: VaultService) -> None:
    secret_id = _create(vault, "planted")
    vault.add_version(secret_id, Secret(PLANTED + "-v2"))
    assert vault.read_plaintext(secret_id).reveal() == PLANTED + "-v2"


def test_planted_value_absent_from_sqlite_file(vault: VaultService, database: Database) -> None:
    if database.engine.dialect.name != "sqlite":
        pytest.skip("reads the SQLite database file; PostgreSQL is checked by SELECT")
    _store_planted(vault)
    path = Path(make_url(database.url).database or "")
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]

    raw = database_file_bytes(files)

    assert b"planted" in raw  # the secret's name is stored, so the file was the right one
    for window in _windows(PLANTED):
        assert window not in raw, window


def test_planted_value_absent_from_table_select(vault: VaultService, database: Database) -> None:
    _store_planted(vault)

    with database.engine.connect() as connection:
        rows = [
            *connection.execute(text("SELECT * FROM secrets")).all(),
            *connection.execute(text("SELECT * FROM secret_versions")).all(),
        ]

    assert len(rows) == 3
    dumped = repr(rows).encode() + b"".join(
        bytes(value) for row in rows for value in row if isinstance(value, bytes | memoryview)
    )
    for window in _windows(PLANTED):
        assert window not in dumped, window


@pytest.fixture
def json_logs(settings: Settings) -> Iterator[None]:
    configure_logging(
        settings.model_copy(update={"log_format": LogFormat.JSON, "log_level": "debug"})
    )
    yield
    structlog.reset_defaults()


def _log_entries(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_planted_value_absent_from_logs(
    database: Database,
    keyring: Keyring,
    json_logs: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vault = VaultService(database, keyring)
    secret_id = _create(vault, "planted")
    vault.add_version(secret_id, Secret(PLANTED + "-v2"))
    vault.read_plaintext(secret_id)
    _set_envelope(database, secret_id, _envelope(database, secret_id, 1)[:-1])
    with pytest.raises(CiphertextInvalid):
        vault.read_plaintext(secret_id)
    vault.destroy_version(secret_id, 1)

    stderr = capsys.readouterr().err

    events = [entry["event"] for entry in _log_entries(stderr)]
    assert "vault_secret_created" in events
    assert "vault_decrypt_failed" in events
    assert "vault_secret_version_destroyed" in events
    for window in _windows(PLANTED):
        assert window.decode() not in stderr, window
