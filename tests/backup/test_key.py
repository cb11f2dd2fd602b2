"""Where the backup key comes from, and how a malformed LLERO_BACKUP_KEY is rejected."""

import base64
from pathlib import Path

import pytest

from llero.backup.service import backup_key
from llero.config.keyfiles import BACKUP_KEY, create_key_files, read_symmetric_key
from llero.config.settings import Settings, load_settings
from llero.errors import KeyFileError, SettingsError


def _settings(data_dir: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, **values)  # type: ignore[call-arg]


def test_backup_key_made_by_init(tmp_path: Path) -> None:
    create_key_files(tmp_path / "keys")

    key = backup_key(_settings(tmp_path))

    assert key.reveal() == read_symmetric_key(tmp_path / "keys" / BACKUP_KEY).material


def test_backup_key_setting_wins_over_file(tmp_path: Path) -> None:
    create_key_files(tmp_path / "keys")
    material = bytes(range(32))

    key = backup_key(_settings(tmp_path, backup_key=base64.b64encode(material).decode()))

    assert key.reveal() == material


def test_backup_key_file_must_be_private(tmp_path: Path) -> None:
    create_key_files(tmp_path / "keys")
    (tmp_path / "keys" / BACKUP_KEY).chmod(0o644)

    with pytest.raises(KeyFileError) as raised:
        backup_key(_settings(tmp_path))

    assert "is readable by group or others" in raised.value.message


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_invalid_backup_key_setting_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LLERO_BACKUP_KEY", value)

    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None)

    assert raised.value.message.startswith("invalid setting LLERO_BACKUP_KEY: must ")
    assert value not in raised.value.message
