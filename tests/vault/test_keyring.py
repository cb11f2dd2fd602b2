"""The keyring loads KEKs from master.key, LLERO_MASTER_KEY and the manifest. It creates its files
private and writes them atomically, and a wrong, exposed or missing key stops the load."""

import base64
import json
import os
import re
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from llero.config.keyfiles import MASTER_KEY, read_symmetric_key
from llero.config.settings import load_settings
from llero.crypto import Secret
from llero.errors import KeyFileError, NotFound, Refused, SettingsError
from llero.vault.envelope import Binding, open_plaintext, seal_plaintext
from llero.vault.errors import CiphertextInvalid, InvalidReason, VaultSealed
from llero.vault.keyring import (
    KEK_DIR,
    MANIFEST,
    KekSource,
    Keyring,
    add_kek,
    kek_id_of,
    load_keyring,
    mark_retired,
    read_manifest,
)
from tests.vault.conftest import PLANTED

BINDING = Binding(table="secret_versions", record_id=1, field="value", version=1)


def _master_material(keys_dir: Path) -> bytes:
    return read_symmetric_key(keys_dir / MASTER_KEY).material


def _encoded_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_master_key_file_is_base_kek(keys_dir: Path) -> None:
    keyring = load_keyring(keys_dir)

    assert not keyring.sealed
    assert keyring.current.id == kek_id_of(_master_material(keys_dir))
    assert keyring.current.version == 1
    assert keyring.ids == (keyring.current.id,)


def test_kek_id_depends_on_key() -> None:
    first, second = kek_id_of(bytes(32)), kek_id_of(bytes(31) + b"\x01")

    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert first != second


def test_environment_key_replaces_master_key_file(keys_dir: Path) -> None:
    encoded = _encoded_key()

    keyring = load_keyring(keys_dir, SecretStr(encoded))

    assert keyring.current.id == kek_id_of(base64.b64decode(encoded))
    assert keyring.current.id != kek_id_of(_master_material(keys_dir))


def test_environment_key_without_master_key_file(keys_dir: Path) -> None:
    (keys_dir / MASTER_KEY).unlink()

    keyring = load_keyring(keys_dir, SecretStr(_encoded_key()))

    assert not keyring.sealed


def test_no_key_anywhere_is_sealed(keys_dir: Path) -> None:
    (keys_dir / MASTER_KEY).unlink()

    keyring = load_keyring(keys_dir)

    assert keyring.sealed
    assert keyring.ids == ()
    with pytest.raises(VaultSealed):
        _ = keyring.current


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_exposed_master_key_file_refused(keys_dir: Path, mode: int) -> None:
    (keys_dir / MASTER_KEY).chmod(mode)

    with pytest.raises(KeyFileError, match=r"readable by group or others"):
        load_keyring(keys_dir)


def test_exposed_added_kek_file_refused(keys_dir: Path) -> None:
    record = add_kek(keys_dir)
    (keys_dir / KEK_DIR / f"{record.id}.key").chmod(0o644)

    with pytest.raises(KeyFileError, match=r"readable by group or others"):
        load_keyring(keys_dir)


def test_wrong_master_key_file_cannot_open_envelopes(keys_dir: Path) -> None:
    envelope = seal_plaintext(load_keyring(keys_dir), Secret(PLANTED.encode()), BINDING)
    (keys_dir / MASTER_KEY).unlink()
    (keys_dir / MASTER_KEY).write_bytes(base64.b64encode(secrets.token_bytes(32)))
    (keys_dir / MASTER_KEY).chmod(0o600)

    with pytest.raises(CiphertextInvalid) as caught:
        open_plaintext(load_keyring(keys_dir), envelope, BINDING)

    assert caught.value.reason is InvalidReason.UNKNOWN_KEK


def test_wrong_master_key_file_after_rotation_stops_load(keys_dir: Path) -> None:
    add_kek(keys_dir)
    (keys_dir / MASTER_KEY).unlink()
    (keys_dir / MASTER_KEY).write_bytes(base64.b64encode(secrets.token_bytes(32)))
    (keys_dir / MASTER_KEY).chmod(0o600)

    with pytest.raises(KeyFileError, match=r"master\.key does not hold KEK [0-9a-f]{16}"):
        load_keyring(keys_dir)


def test_wrong_environment_key_after_rotation_stops_load(keys_dir: Path) -> None:
    add_kek(keys_dir)

    with pytest.raises(KeyFileError, match=r"LLERO_MASTER_KEY does not hold KEK") as caught:
        load_keyring(keys_dir, SecretStr(_encoded_key()))

    assert "base64" not in caught.value.message


def test_swapped_kek_file_stops_load(keys_dir: Path) -> None:
    record = add_kek(keys_dir)
    path = keys_dir / KEK_DIR / f"{record.id}.key"
    path.unlink()
    path.write_bytes(base64.b64encode(secrets.token_bytes(32)))
    path.chmod(0o600)

    with pytest.raises(KeyFileError, match=rf"{record.id}\.key does not hold KEK {record.id}"):
        load_keyring(keys_dir)


def test_missing_kek_file_stops_load(keys_dir: Path) -> None:
    record = add_kek(keys_dir)
    (keys_dir / KEK_DIR / f"{record.id}.key").unlink()

    with pytest.raises(KeyFileError, match="missing"):
        load_keyring(keys_dir)


def test_add_kek_makes_new_current_and_keeps_old(keys_dir: Path) -> None:
    base_id = load_keyring(keys_dir).current.id

    record = add_kek(keys_dir)
    keyring = load_keyring(keys_dir)

    assert record.version == 2
    assert record.source is KekSource.FILE
    assert keyring.current.id == record.id
    assert keyring.current.version == 2
    assert set(keyring.ids) == {base_id, record.id}
    assert add_kek(keys_dir).version == 3


def test_add_kek_writes_private_files_atomically(keys_dir: Path) -> None:
    record = add_kek(keys_dir)
    kek_dir = keys_dir / KEK_DIR

    assert _mode(kek_dir) == 0o700
    assert _mode(kek_dir / MANIFEST) == 0o600
    assert _mode(kek_dir / f"{record.id}.key") == 0o600
    assert sorted(path.name for path in kek_dir.iterdir()) == sorted(
        [".lock", MANIFEST, f"{record.id}.key"]
    )
    document = json.loads((kek_dir / MANIFEST).read_text())
    assert document["current"] == record.id
    assert [key["version"] for key in document["keys"]] == [1, 2]
    assert [key["source"] for key in document["keys"]] == ["base", "file"]


def test_add_kek_refused_when_kek_dir_is_open(keys_dir: Path) -> None:
    add_kek(keys_dir)
    (keys_dir / KEK_DIR).chmod(0o755)

    with pytest.raises(KeyFileError, match="chmod 700"):
        add_kek(keys_dir)
    with pytest.raises(KeyFileError, match="chmod 700"):
        load_keyring(keys_dir)


def test_add_kek_when_sealed_raises(keys_dir: Path) -> None:
    (keys_dir / MASTER_KEY).unlink()

    with pytest.raises(VaultSealed):
        add_kek(keys_dir)


def test_unlisted_kek_file_never_loaded(keys_dir: Path) -> None:
    add_kek(keys_dir)
    stray = secrets.token_bytes(32)
    stray_path = keys_dir / KEK_DIR / f"{kek_id_of(stray)}.key"
    stray_path.write_bytes(base64.b64encode(stray))
    stray_path.chmod(0o600)

    assert kek_id_of(stray) not in load_keyring(keys_dir).ids


def test_mark_retired_unloads_kek_and_deletes_file(keys_dir: Path) -> None:
    second = add_kek(keys_dir)
    third = add_kek(keys_dir)

    mark_retired(keys_dir, second.id, now=datetime(2026, 1, 2, tzinfo=UTC))

    assert second.id not in load_keyring(keys_dir).ids
    assert not (keys_dir / KEK_DIR / f"{second.id}.key").exists()
    retired = read_manifest(keys_dir).record(second.id)
    assert retired is not None
    assert retired.retired_at == datetime(2026, 1, 2, tzinfo=UTC)
    assert load_keyring(keys_dir).current.id == third.id


def test_mark_retired_base_keeps_master_key_file(keys_dir: Path) -> None:
    base_id = load_keyring(keys_dir).current.id
    add_kek(keys_dir)

    mark_retired(keys_dir, base_id)

    assert base_id not in load_keyring(keys_dir).ids
    assert (keys_dir / MASTER_KEY).exists()


def test_mark_retired_current_refused(keys_dir: Path) -> None:
    record = add_kek(keys_dir)

    with pytest.raises(Refused, match="current KEK"):
        mark_retired(keys_dir, record.id)


def test_mark_retired_unknown_kek_not_found(keys_dir: Path) -> None:
    add_kek(keys_dir)

    with pytest.raises(NotFound):
        mark_retired(keys_dir, "0123456789abcdef")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"version": 2}, "version 1"),
        ({"current": "ffffffffffffffff"}, "current KEK must be listed"),
        ({"keys": [{"id": "../../../etc/x", "version": 9}]}, "16 lower-case hex"),
        ({"keys": [{"version": 0}]}, "positive integer"),
        ({"keys": [{"version": True}]}, "positive integer"),
        ({"keys": [{"source": "remote"}]}, "remote"),
        ({"keys": [{"created_at": 5}]}, "ISO 8601"),
    ],
)
def test_invalid_manifest_stops_load(
    keys_dir: Path, change: dict[str, object], problem: str
) -> None:
    add_kek(keys_dir)
    path = keys_dir / KEK_DIR / MANIFEST
    document = json.loads(path.read_text())
    if "keys" in change:
        patch = change["keys"][0]  # type: ignore[index]
        document["keys"][1].update(patch)
    else:
        document.update(change)
    path.write_text(json.dumps(document))

    with pytest.raises(KeyFileError, match=problem):
        load_keyring(keys_dir)


def test_broken_manifest_keeps_loaded_keks(keys_dir: Path) -> None:
    add_kek(keys_dir)
    keyring = load_keyring(keys_dir)
    before = keyring.ids
    path = keys_dir / KEK_DIR / MANIFEST
    os.replace(path, keys_dir / "manifest.bak")
    path.write_text("{")
    path.chmod(0o600)

    assert keyring.refresh() is False
    assert keyring.ids == before


def test_keyring_repr_shows_ids_only(keys_dir: Path) -> None:
    keyring = load_keyring(keys_dir)
    material = _master_material(keys_dir)

    assert material.hex() not in repr(keyring)
    assert base64.b64encode(material).decode() not in repr(keyring.current)
    assert keyring.current.id in repr(keyring)


def test_keyring_current_must_be_listed() -> None:
    with pytest.raises(ValueError, match="current KEK"):
        Keyring([], "0123456789abcdef")


def test_master_key_setting_loaded_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = _encoded_key()
    monkeypatch.setenv("LLERO_MASTER_KEY", encoded)

    settings = load_settings(_env_file=None)

    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == encoded
    assert encoded not in repr(settings)
    assert encoded not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not base64 at all!", "must be base64"),
        (base64.b64encode(b"x" * 16).decode(), "32 bytes, not 16"),
        (base64.b64encode(b"x" * 33).decode(), "32 bytes, not 33"),
    ],
)
def test_invalid_master_key_setting_rejected(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("LLERO_MASTER_KEY", value)

    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)

    assert caught.value.message.startswith("invalid setting LLERO_MASTER_KEY: ")
    assert problem in caught.value.message
    assert value not in caught.value.message
