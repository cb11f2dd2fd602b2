"""Key files: created mode 0600 inside a 0700 directory, and refused when others can read them.

A key file that group or others can read has to be treated as leaked, so every command that reads
one checks its mode first and stops with a one-line reason instead of using it.
"""

import base64
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from llero.errors import KeyFileError

# Files `llero init` creates under data/keys/. The vault's key-encryption key, the audit chain's
# HMAC key and the blind index key are 256-bit random values; the token signing key is an Ed25519
# private key.
MASTER_KEY = "master.key"
AUDIT_KEY = "audit.key"
# The HMAC key of blind indexes (llero.vault.fields), kept apart from the KEKs because rotating it
# would mean recomputing every index.
INDEX_KEY = "index.key"
# Encrypts backups. Backups carry every other key file, so this one must be kept apart from them.
BACKUP_KEY = "backup.key"
SIGNING_KEY = "signing-ed25519.pem"

SYMMETRIC_KEY_BYTES = 32


@dataclass(frozen=True)
class KeyMaterial:
    """The raw bytes of one key file; ``repr`` never shows them."""

    name: str
    material: bytes

    def __repr__(self) -> str:
        return f"KeyMaterial(name={self.name!r}, material=<{len(self.material)} bytes hidden>)"


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it mode 0700."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def check_private_file(path: Path) -> None:
    """Raise KeyFileError unless ``path`` is a regular file that only its owner can read."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} is missing; run `llero init`") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by group or others (mode {mode:04o}); "
            f"run `chmod 600 {path}`"
        )
    if info.st_uid != os.geteuid():
        raise KeyFileError(f"key file {path} belongs to another user (uid {info.st_uid})")


def write_private_file(path: Path, content: bytes) -> None:
    """Write ``content`` to a new file created mode 0600; an existing file is never overwritten."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)


def read_private_file(path: Path) -> bytes:
    check_private_file(path)
    return path.read_bytes()


def read_symmetric_key(path: Path) -> KeyMaterial:
    """Read a base64 key file holding exactly 32 random bytes."""
    try:
        material = base64.b64decode(read_private_file(path).strip(), validate=True)
    except ValueError:
        raise KeyFileError(f"key file {path} is not valid base64") from None
    if len(material) != SYMMETRIC_KEY_BYTES:
        raise KeyFileError(f"key file {path} must hold {SYMMETRIC_KEY_BYTES} bytes")
    return KeyMaterial(path.name, material)


def read_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(read_private_file(path), password=None)
    except ValueError:
        raise KeyFileError(f"key file {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} must hold an Ed25519 private key")
    return key


def create_key_files(keys_dir: Path, *, master_key: bool = True) -> list[Path]:
    """Create every missing key file; return the paths created. Existing files are kept.

    ``master_key`` False leaves out master.key, for a base KEK that an external key service
    wraps (see vault/kek_sources.py).
    """
    make_private_dir(keys_dir)
    created = []
    shared = (AUDIT_KEY, INDEX_KEY, BACKUP_KEY)
    names = (MASTER_KEY, *shared) if master_key else shared
    for name in names:
        path = keys_dir / name
        if not path.exists():
            write_private_file(path, base64.b64encode(secrets.token_bytes(SYMMETRIC_KEY_BYTES)))
            created.append(path)
    signing_path = keys_dir / SIGNING_KEY
    if not signing_path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(signing_path, pem)
        created.append(signing_path)
    return created


def check_key_files(keys_dir: Path, *, master_key: bool = True) -> None:
    """Read every key file once so a bad mode or content stops the start, not a later request.

    The signing keys are read as the ring that verifies tokens, so a rotated ring whose legacy
    key was pruned passes, and a ring that lists a missing or altered key fails.
    """
    # Imported here because signing_keys imports this module for its file helpers.
    from llero.identity.signing_keys import load_signing_key_ring  # noqa: PLC0415

    master_key_file = keys_dir / MASTER_KEY
    # Without master.key the vault starts sealed and waits for its key (see llero.vault.keyring).
    # A master.key that exists must still be private and well-formed.
    if master_key and (master_key_file.exists() or master_key_file.is_symlink()):
        read_symmetric_key(master_key_file)
    read_symmetric_key(keys_dir / AUDIT_KEY)
    read_symmetric_key(keys_dir / INDEX_KEY)
    # The server never uses the backup key, and LLERO_BACKUP_KEY may replace it, so it may be
    # missing; but a copy that others can read is treated as leaked.
    if (keys_dir / BACKUP_KEY).exists():
        read_symmetric_key(keys_dir / BACKUP_KEY)
    load_signing_key_ring(keys_dir)
