"""Key files: created 0600 in a 0700 directory whatever the umask, never overwritten, and
rejected on read when anyone but the owner could read or write them."""

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from llero.config.keyfiles import (
    AUDIT_KEY,
    BACKUP_KEY,
    INDEX_KEY,
    MASTER_KEY,
    SIGNING_KEY,
    KeyMaterial,
    check_key_files,
    create_key_files,
    read_signing_key,
    read_symmetric_key,
    write_private_file,
)
from llero.errors import KeyFileError

KEY_NAMES = (MASTER_KEY, AUDIT_KEY, INDEX_KEY, BACKUP_KEY, SIGNING_KEY)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 000, so only the code's own modes keep the files private."""
    previous = os.umask(0)
    yield
    os.umask(previous)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    create_key_files(path)
    return path


def test_key_files_created_private(tmp_path: Path, permissive_umask: None) -> None:
    keys_dir = tmp_path / "keys"

    created = create_key_files(keys_dir)

    assert sorted(path.name for path in created) == sorted(KEY_NAMES)
    assert _mode(keys_dir) == 0o700
    for name in KEY_NAMES:
        assert _mode(keys_dir / name) == 0o600, name


def test_existing_key_dir_made_private(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o755)
    keys_dir.chmod(0o755)

    create_key_files(keys_dir)

    assert _mode(keys_dir) == 0o700


def test_key_files_hold_fresh_random_keys(keys_dir: Path, tmp_path: Path) -> None:
    other_dir = tmp_path / "other-keys"
    create_key_files(other_dir)

    master = read_symmetric_key(keys_dir / MASTER_KEY)
    audit = read_symmetric_key(keys_dir / AUDIT_KEY)

    assert len(master.material) == 32
    assert len(audit.material) == 32
    assert master.material != audit.material
    assert master.material != read_symmetric_key(other_dir / MASTER_KEY).material
    assert isinstance(read_signing_key(keys_dir / SIGNING_KEY), Ed25519PrivateKey)


def test_existing_key_files_kept(keys_dir: Path) -> None:
    before = {name: (keys_dir / name).read_bytes() for name in KEY_NAMES}

    created = create_key_files(keys_dir)

    assert created == []
    assert {name: (keys_dir / name).read_bytes() for name in KEY_NAMES} == before


def test_missing_key_file_recreated_alone(keys_dir: Path) -> None:
    master = (keys_dir / MASTER_KEY).read_bytes()
    (keys_dir / AUDIT_KEY).unlink()

    created = create_key_files(keys_dir)

    assert created == [keys_dir / AUDIT_KEY]
    assert (keys_dir / MASTER_KEY).read_bytes() == master


def test_private_file_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_private_file(path, b"first")

    with pytest.raises(FileExistsError):
        write_private_file(path, b"second")
    assert path.read_bytes() == b"first"


def test_private_file_not_written_through_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "key"
    link.symlink_to(target)

    with pytest.raises(FileExistsError):
        write_private_file(link, b"secret")
    assert not target.exists()


@pytest.mark.parametrize(
    "mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o666], ids=lambda mode: f"{mode:04o}"
)
@pytest.mark.parametrize("name", KEY_NAMES)
def test_key_file_open_to_others_rejected(keys_dir: Path, name: str, mode: int) -> None:
    path = keys_dir / name
    path.chmod(mode)

    with pytest.raises(KeyFileError) as caught:
        check_key_files(keys_dir)

    assert caught.value.message == (
        f"key file {path} is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700], ids=lambda mode: f"{mode:04o}")
def test_key_file_private_to_owner_accepted(keys_dir: Path, mode: int) -> None:
    (keys_dir / MASTER_KEY).chmod(mode)

    check_key_files(keys_dir)


def test_missing_key_file_rejected(keys_dir: Path) -> None:
    (keys_dir / SIGNING_KEY).unlink()

    with pytest.raises(KeyFileError) as caught:
        check_key_files(keys_dir)

    assert caught.value.message == f"key file {keys_dir / SIGNING_KEY} is missing; run `llero init`"


def test_symlinked_key_file_rejected(keys_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    (keys_dir / MASTER_KEY).rename(real)
    (keys_dir / MASTER_KEY).symlink_to(real)

    with pytest.raises(KeyFileError) as caught:
        check_key_files(keys_dir)

    assert caught.value.message == f"key file {keys_dir / MASTER_KEY} is not a regular file"


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_key_file_of_other_user_rejected(keys_dir: Path) -> None:
    path = keys_dir / AUDIT_KEY
    os.chown(path, 12345, -1)

    with pytest.raises(KeyFileError) as caught:
        check_key_files(keys_dir)

    assert caught.value.message == f"key file {path} belongs to another user (uid 12345)"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not base64 !!", "is not valid base64"),
        (base64.b64encode(b"x" * 16), "must hold 32 bytes"),
        (base64.b64encode(b"x" * 64), "must hold 32 bytes"),
        (b"", "must hold 32 bytes"),
    ],
)
def test_malformed_symmetric_key_rejected(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / MASTER_KEY
    write_private_file(path, content)

    with pytest.raises(KeyFileError) as caught:
        read_symmetric_key(path)

    assert caught.value.message == f"key file {path} {problem}"


def test_signing_key_of_wrong_type_rejected(tmp_path: Path) -> None:
    path = tmp_path / SIGNING_KEY
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_file(path, pem)

    with pytest.raises(KeyFileError) as caught:
        read_signing_key(path)

    assert caught.value.message == f"key file {path} must hold an Ed25519 private key"


def test_signing_key_not_pem_rejected(tmp_path: Path) -> None:
    path = tmp_path / SIGNING_KEY
    write_private_file(path, b"-----BEGIN NOTHING-----\n")

    with pytest.raises(KeyFileError) as caught:
        read_signing_key(path)

    assert caught.value.message == f"key file {path} is not a PEM private key"


def test_key_material_repr_hides_bytes(keys_dir: Path) -> None:
    key = read_symmetric_key(keys_dir / MASTER_KEY)

    shown = repr(key)

    assert shown == "KeyMaterial(name='master.key', material=<32 bytes hidden>)"
    assert key.material.hex() not in shown
    assert repr(KeyMaterial("x", b"\x01\x02")) == "KeyMaterial(name='x', material=<2 bytes hidden>)"
