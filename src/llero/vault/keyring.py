"""Key-encryption keys (KEKs): where they come from, which one is current, how a new one is added.

Files under the keys directory:

    master.key          the base KEK that `llero init` creates (version 1)
    kek/manifest.json   every KEK by id and version, the current one, and when each was retired
    kek/<id>.key        KEKs added by ``add_kek``, base64 like master.key
    kek/<id>.key.wrapped  KEKs added by ``add_kek`` under an external key service, encrypted by
                        it (see kek_wrapping.py); the base KEK is then master.key.wrapped

LLERO_MASTER_KEY, when set, is the base KEK and master.key is not read, so a deployment can keep
the key out of the data directory. Until the first ``add_kek`` there is no manifest and the base
KEK is the whole keyring. With neither the variable nor master.key, the keyring is sealed. It
contains no KEK, and every vault operation raises VaultSealed until ``Keyring.unseal`` is given
the base key.

A KEK's id is derived from its bytes, so an envelope names the exact key that wrapped it and a
wrong key is reported as such, wherever the key was loaded from. Retired KEKs are never loaded.
"""

import base64
import binascii
import fcntl
import hashlib
import hmac
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from llero.config.keyfiles import (
    MASTER_KEY,
    SYMMETRIC_KEY_BYTES,
    read_private_file,
    read_symmetric_key,
)
from llero.crypto import Secret, random_token
from llero.errors import KeyFileError, NotFound, Refused
from llero.logs import get_logger
from llero.vault.errors import BackendUnavailable, VaultSealed
from llero.vault.kek_wrapping import KekWrapper

KEK_DIR = "kek"
MANIFEST = "manifest.json"
LOCK_FILE = ".lock"
MANIFEST_VERSION = 1
BASE_VERSION = 1

KEK_ID_BYTES = 8
KEK_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
_KEK_ID_LABEL = b"llero vault kek id v1"

# How often a running process looks for a KEK that another process added.
REFRESH_INTERVAL_SECONDS = 1.0
# How long a process waits before it calls a key service again that failed to decrypt a new KEK.
SERVICE_RETRY_SECONDS = 5.0

logger = get_logger(__name__)


def kek_id_of(material: bytes) -> str:
    """Return the id of a KEK: the first 8 bytes of HMAC-SHA256(KEK, fixed label), as hex.

    A MAC of a public constant under the key identifies the key without revealing anything about
    it (the same idea as a key check value). 64 bits tell a few KEKs apart; they are no secret.
    """
    digest = hmac.new(material, _KEK_ID_LABEL, hashlib.sha256).digest()
    return digest[:KEK_ID_BYTES].hex()


@dataclass(frozen=True)
class Kek:
    """One loaded key-encryption key; ``material`` is masked in ``repr``."""

    id: str
    version: int
    material: Secret[bytes]


class KekSource(StrEnum):
    BASE = "base"  # LLERO_MASTER_KEY, or else master.key
    FILE = "file"  # kek/<id>.key
    WRAPPED = "wrapped"  # kek/<id>.key.wrapped, decrypted by the external key service


@dataclass(frozen=True)
class KekRecord:
    """One KEK listed in the manifest; ``retired_at`` is set once no record needs it."""

    id: str
    version: int
    source: KekSource
    created_at: datetime
    retired_at: datetime | None = None


@dataclass(frozen=True)
class Manifest:
    current: str
    keys: tuple[KekRecord, ...]

    def record(self, kek_id: str) -> KekRecord | None:
        return next((record for record in self.keys if record.id == kek_id), None)


@dataclass(frozen=True)
class _Snapshot:
    keks: dict[str, Kek]
    current: str | None
    manifest_signature: tuple[int, ...] | None


class Keyring:
    """The KEKs a process can use: the current one wraps new data keys, and every loaded one
    unwraps. A keyring made by ``load_keyring`` reloads itself when another process changes the
    manifest, so readers accept a KEK that was added after this process started."""

    def __init__(
        self,
        keks: Iterable[Kek] = (),
        current_id: str | None = None,
        *,
        keys_dir: Path | None = None,
        master_key: SecretStr | None = None,
        wrapper: KekWrapper | None = None,
    ) -> None:
        by_id = {kek.id: kek for kek in keks}
        if by_id and current_id not in by_id:
            raise ValueError("the current KEK must be one of the keyring's KEKs")
        if not by_id and current_id is not None:
            raise ValueError("a sealed keyring has no current KEK")
        self._snapshot = _Snapshot(by_id, current_id, _manifest_signature(keys_dir))
        self._keys_dir = keys_dir
        self._master_key = master_key
        self._wrapper = wrapper
        self._failed_signature: tuple[int, ...] | None = None
        # Until when a manifest that failed to load because its key service failed is left
        # alone. None marks a manifest that failed for good (a bad file).
        self._retry_at: float | None = None
        self._lock = threading.Lock()
        self._checked_at = time.monotonic()

    def __repr__(self) -> str:
        return f"Keyring(current={self._snapshot.current!r}, ids={self.ids!r})"

    @property
    def sealed(self) -> bool:
        """True when no KEK is loaded, so nothing can be encrypted or decrypted."""
        return not self._snapshot.keks

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._snapshot.keks))

    @property
    def current(self) -> Kek:
        """Return the KEK that wraps new data keys; raise VaultSealed when there is none."""
        if time.monotonic() - self._checked_at >= REFRESH_INTERVAL_SECONDS:
            self.refresh()
        snapshot = self._snapshot
        if snapshot.current is None:
            raise VaultSealed()
        return snapshot.keks[snapshot.current]

    def kek(self, kek_id: str) -> Kek | None:
        """Return the loaded KEK ``kek_id``, reloading once if the manifest changed since."""
        found = self._snapshot.keks.get(kek_id)
        if found is None and self.refresh():
            found = self._snapshot.keks.get(kek_id)
        return found

    def refresh(self) -> bool:
        """Reload the KEKs if the manifest changed; return True when it did.

        A manifest that cannot be read leaves the loaded KEKs in use and is logged, so a broken
        edit on disk does not stop a running server from reading secrets.
        """
        if self._keys_dir is None:
            return False
        with self._lock:
            now = self._checked_at = time.monotonic()
            signature = _manifest_signature(self._keys_dir)
            unchanged = signature == self._snapshot.manifest_signature
            if unchanged or self._failed_earlier(signature, now):
                return False
            try:
                self._snapshot = _load_snapshot(
                    self._keys_dir, self._master_key, self._wrapper, known=self._snapshot.keks
                )
            except KeyFileError as error:
                # Logged once per version of the file, not on every lookup that misses.
                self._failed_signature, self._retry_at = signature, None
                logger.warning("vault_keyring_reload_failed", error=error.message)
                return False
            except BackendUnavailable as error:
                # A key service that is down may come back, so the same manifest is tried again,
                # but not on every lookup, which would send it a request per secret read.
                self._failed_signature, self._retry_at = signature, now + SERVICE_RETRY_SECONDS
                logger.warning(
                    "vault_keyring_reload_failed",
                    error=error.message,
                    retry_in=SERVICE_RETRY_SECONDS,
                )
                return False
            logger.info("vault_keyring_reloaded", current=self._snapshot.current, ids=self.ids)
            return True

    def _failed_earlier(self, signature: tuple[int, ...] | None, now: float) -> bool:
        if signature is None or signature != self._failed_signature:
            return False
        return self._retry_at is None or now < self._retry_at

    def seal(self) -> None:
        """Drop every loaded KEK, as if the process had started without its master key."""
        with self._lock:
            self._master_key = None
            self._snapshot = _Snapshot({}, None, self._snapshot.manifest_signature)
        logger.warning("vault_sealed_again")

    def unseal(self, master_key: SecretStr) -> Kek:
        """Load every KEK with ``master_key`` as the base key; return the current KEK.

        Raises Refused when the keyring is not sealed, and KeyFileError when the key is not the
        base KEK that the manifest lists or a KEK file is unusable. The caller checks the key
        against the stored envelopes when there is no manifest (see llero.vault.unseal).
        """
        if self._keys_dir is None:
            raise Refused("this keyring has no key directory to load KEKs from")
        with self._lock:
            if not self.sealed:
                raise Refused("the vault is not sealed")
            snapshot = _load_snapshot(self._keys_dir, master_key, self._wrapper)
            if snapshot.current is None:
                raise KeyFileError("the master key did not load a KEK")
            self._master_key = master_key
            self._snapshot = snapshot
            self._checked_at = time.monotonic()
        logger.info("vault_unsealed", current=snapshot.current, ids=self.ids)
        return snapshot.keks[snapshot.current]

    def manifest(self) -> Manifest:
        """Return the manifest this keyring was loaded from (see ``read_manifest``)."""
        return read_manifest(self._own_keys_dir(), self._master_key)

    def add_kek(self, *, before_listing: Callable[[KekRecord], None] | None = None) -> KekRecord:
        """Add a new current KEK where this keyring's KEKs are kept, protected as they are, and
        load it (see the module function ``add_kek``)."""
        if self.sealed:
            raise VaultSealed()
        record = add_kek(
            self._own_keys_dir(),
            self._master_key,
            wrapper=self._wrapper,
            before_listing=before_listing,
        )
        self.refresh()
        if self._snapshot.current != record.id:
            raise KeyFileError(f"KEK {record.id} was added but did not load; see the log")
        return record

    def _own_keys_dir(self) -> Path:
        if self._keys_dir is None:
            raise Refused("this keyring has no key directory")
        return self._keys_dir


def load_keyring(
    keys_dir: Path, master_key: SecretStr | None = None, wrapper: KekWrapper | None = None
) -> Keyring:
    """Load every KEK in use; raise KeyFileError naming the file or variable that is unusable.

    ``wrapper`` decrypts the KEKs that a rotation added under an external key service; loading
    them raises BackendUnavailable when it fails. Returns a sealed keyring when there is no
    manifest, no LLERO_MASTER_KEY and no master.key.
    """
    snapshot = _load_snapshot(keys_dir, master_key, wrapper)
    return Keyring(
        snapshot.keks.values(),
        snapshot.current,
        keys_dir=keys_dir,
        master_key=master_key,
        wrapper=wrapper,
    )


def add_kek(
    keys_dir: Path,
    master_key: SecretStr | None = None,
    *,
    wrapper: KekWrapper | None = None,
    before_listing: Callable[[KekRecord], None] | None = None,
    now: datetime | None = None,
) -> KekRecord:
    """Create a new random KEK, make it the current one, and return its record.

    With ``wrapper`` the KEK is stored encrypted by the external key service, as the base KEK is
    under that source. Without it, the KEK is a plain key file like master.key. The previous KEKs
    stay loaded, so every record stays readable until rotation.py has re-wrapped it.

    The key file is written before the manifest, so a crash in between leaves an unlisted file
    that is never loaded. ``before_listing`` is called in between with the new record (to write
    an audit record first); if it raises, the key file is deleted and the KEK is not added.
    """
    moment = _utc(now)
    with _locked(keys_dir):
        manifest = read_manifest(keys_dir, master_key)
        _load_keks(keys_dir, master_key, wrapper, manifest)

        material = Secret(os.urandom(SYMMETRIC_KEY_BYTES))
        kek_id = kek_id_of(material.reveal())
        source = KekSource.FILE if wrapper is None else KekSource.WRAPPED
        version = max(record.version for record in manifest.keys) + 1
        record = KekRecord(kek_id, version, source, created_at=moment)
        path = _kek_path(keys_dir, kek_id, source)
        _write_durably(path, _key_file_content(material, wrapper))
        try:
            if before_listing is not None:
                before_listing(record)
        except BaseException:
            path.unlink()
            raise
        _write_manifest(keys_dir, Manifest(current=kek_id, keys=(*manifest.keys, record)))
    logger.info("vault_kek_added", kek_id=kek_id, version=version, source=source.value)
    return record


def _key_file_content(material: Secret[bytes], wrapper: KekWrapper | None) -> bytes:
    if wrapper is None:
        return base64.b64encode(material.reveal()) + b"\n"
    return wrapper.wrapped_document(material)


def mark_retired(keys_dir: Path, kek_id: str, *, now: datetime | None = None) -> None:
    """Stop loading ``kek_id`` and delete its key file (the base key's file is kept).

    Only rotation.retire_kek should call this, after it has checked that no record still needs the
    KEK: any record still wrapped by it becomes unreadable. So do database backups taken before
    rotation, which is the point of retiring a KEK; copy the key file away first if old backups
    must stay restorable.
    """
    moment = _utc(now)
    with _locked(keys_dir):
        manifest = _read_manifest_file(keys_dir)
        record = None if manifest is None else manifest.record(kek_id)
        if manifest is None or record is None:
            raise NotFound(f"KEK {kek_id} is not in {MANIFEST}")
        if kek_id == manifest.current:
            raise Refused(f"KEK {kek_id} is the current KEK; add a new KEK before retiring it")
        if record.retired_at is None:
            retired = replace(record, retired_at=moment)
            keys = tuple(retired if item.id == kek_id else item for item in manifest.keys)
            _write_manifest(keys_dir, replace(manifest, keys=keys))
        _delete_retired_file(keys_dir, record)
    logger.info("vault_kek_retired", kek_id=kek_id, version=record.version)


def read_manifest(keys_dir: Path, master_key: SecretStr | None = None) -> Manifest:
    """Return the manifest, or the one-KEK manifest implied by the base key before any rotation.

    Raises VaultSealed when there is neither a manifest nor a base key.
    """
    manifest = _read_manifest_file(keys_dir)
    if manifest is not None:
        return manifest
    material = _read_base_material(keys_dir, master_key)
    if material is None:
        raise VaultSealed()
    kek_id = kek_id_of(material.reveal())
    record = KekRecord(kek_id, BASE_VERSION, KekSource.BASE, created_at=_base_created_at(keys_dir))
    return Manifest(current=kek_id, keys=(record,))


# Loading.


def _load_snapshot(
    keys_dir: Path,
    master_key: SecretStr | None,
    wrapper: KekWrapper | None = None,
    *,
    known: Mapping[str, Kek] | None = None,
) -> _Snapshot:
    """Load the KEKs the manifest lists. A wrapped KEK found in ``known`` is taken from there,
    so a reload calls the key service only for KEKs added since."""
    signature = _manifest_signature(keys_dir)
    try:
        manifest = read_manifest(keys_dir, master_key)
    except VaultSealed:
        return _Snapshot({}, None, signature)
    if _base_key_missing(keys_dir, master_key, manifest):
        # After a rotation the manifest exists, but the base KEK it lists still has to come from
        # LLERO_MASTER_KEY or master.key. Without either, the keyring starts sealed too, instead
        # of loading the other KEKs and leaving the base KEK's records unreadable.
        return _Snapshot({}, None, signature)
    keks = _load_keks(keys_dir, master_key, wrapper, manifest, known)
    return _Snapshot({kek.id: kek for kek in keks}, manifest.current, signature)


def _base_key_missing(keys_dir: Path, master_key: SecretStr | None, manifest: Manifest) -> bool:
    needs_base = any(
        record.source is KekSource.BASE and record.retired_at is None for record in manifest.keys
    )
    master_key_file = keys_dir / MASTER_KEY
    has_file = master_key_file.exists() or master_key_file.is_symlink()
    return needs_base and master_key is None and not has_file


def _load_keks(
    keys_dir: Path,
    master_key: SecretStr | None,
    wrapper: KekWrapper | None,
    manifest: Manifest,
    known: Mapping[str, Kek] | None = None,
) -> list[Kek]:
    keks = []
    for record in manifest.keys:
        if record.retired_at is not None:
            continue
        loaded = (known or {}).get(record.id)
        if record.source is KekSource.WRAPPED and loaded is not None:
            keks.append(loaded)
        else:
            keks.append(_load_kek(keys_dir, master_key, wrapper, record))
    return keks


def _load_kek(
    keys_dir: Path, master_key: SecretStr | None, wrapper: KekWrapper | None, record: KekRecord
) -> Kek:
    if record.source is KekSource.BASE:
        origin = _base_origin(keys_dir, master_key)
        material = _read_base_material(keys_dir, master_key)
        if material is None:
            raise KeyFileError(f"{origin} is missing, but {MANIFEST} lists it as KEK {record.id}")
    else:
        path = _kek_path(keys_dir, record.id, record.source)
        origin = str(path)
        if not path.exists() and not path.is_symlink():
            raise KeyFileError(
                f"{origin} is missing, but {MANIFEST} lists it; restore it from the key backup"
            )
        material = _read_kek_file(path, record, wrapper)
    if kek_id_of(material.reveal()) != record.id:
        raise KeyFileError(
            f"{origin} does not hold KEK {record.id} that {MANIFEST} lists; it is a different key"
        )
    return Kek(record.id, record.version, material)


def _read_kek_file(path: Path, record: KekRecord, wrapper: KekWrapper | None) -> Secret[bytes]:
    if record.source is KekSource.FILE:
        return Secret(read_symmetric_key(path).material)
    if wrapper is None:
        raise KeyFileError(
            f"{path} is encrypted by an external key service, but LLERO_VAULT_KEK_SOURCE is "
            "file; set it to the service that wrapped the key"
        )
    return wrapper.unwrap_file(path)


def _read_base_material(keys_dir: Path, master_key: SecretStr | None) -> Secret[bytes] | None:
    if master_key is not None:
        return Secret(decode_master_key(master_key.get_secret_value()))
    path = keys_dir / MASTER_KEY
    if not path.exists() and not path.is_symlink():
        return None
    return Secret(read_symmetric_key(path).material)


def decode_master_key(encoded: str) -> bytes:
    """Decode LLERO_MASTER_KEY; the error never contains the value."""
    try:
        material = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("LLERO_MASTER_KEY is not valid base64") from None
    if len(material) != SYMMETRIC_KEY_BYTES:
        raise KeyFileError(f"LLERO_MASTER_KEY must hold {SYMMETRIC_KEY_BYTES} bytes")
    return material


def _base_origin(keys_dir: Path, master_key: SecretStr | None) -> str:
    return "LLERO_MASTER_KEY" if master_key is not None else str(keys_dir / MASTER_KEY)


def _base_created_at(keys_dir: Path) -> datetime:
    path = keys_dir / MASTER_KEY
    if path.exists():
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return datetime.now(UTC)


def _delete_retired_file(keys_dir: Path, record: KekRecord) -> None:
    if record.source is not KekSource.BASE:
        _kek_path(keys_dir, record.id, record.source).unlink(missing_ok=True)
        _sync_directory(_kek_dir(keys_dir))
    # NOTE: a retired base KEK stays in master.key (or LLERO_MASTER_KEY), because check_key_files
    # requires master.key to start the server. It is never loaded again, but until an admin
    # replaces it, database backups made before the rotation can still be decrypted with it.


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; attach a time zone")
    return moment.astimezone(UTC)


# Files on disk.


def _kek_dir(keys_dir: Path) -> Path:
    return keys_dir / KEK_DIR


def _kek_path(keys_dir: Path, kek_id: str, source: KekSource = KekSource.FILE) -> Path:
    # The id becomes part of a path, so only the exact shape of an id is accepted.
    if not KEK_ID_PATTERN.fullmatch(kek_id):
        raise ValueError("a KEK id is 16 lower-case hex digits")
    suffix = ".key.wrapped" if source is KekSource.WRAPPED else ".key"
    return _kek_dir(keys_dir) / f"{kek_id}{suffix}"


def _manifest_signature(keys_dir: Path | None) -> tuple[int, ...] | None:
    """Return what identifies one version of the manifest file, or None when there is none."""
    if keys_dir is None:
        return None
    try:
        info = (_kek_dir(keys_dir) / MANIFEST).stat()
    except FileNotFoundError:
        return None
    # The manifest is replaced by rename, so a new version always has a new inode.
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _check_private_dir(path: Path) -> None:
    """Raise KeyFileError unless ``path`` is a directory that only its owner can enter or change."""
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise KeyFileError(f"{path} must be a directory, not a link or file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key directory {path} is open to group or others (mode {mode:04o}); "
            f"run `chmod 700 {path}`"
        )
    if info.st_uid != os.geteuid():
        raise KeyFileError(f"key directory {path} belongs to another user (uid {info.st_uid})")


@contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the KEK directory, so two changes never both write the manifest."""
    if not keys_dir.is_dir():
        raise KeyFileError(f"key directory {keys_dir} is missing; run `llero init`")
    kek_dir = _kek_dir(keys_dir)
    kek_dir.mkdir(mode=0o700, exist_ok=True)
    _check_private_dir(kek_dir)
    descriptor = os.open(kek_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _write_durably(path: Path, content: bytes) -> None:
    """Create ``path`` mode 0600 (never overwriting) and flush it and its directory to disk."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    _sync_directory(path.parent)


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# manifest.json.


def _read_manifest_file(keys_dir: Path) -> Manifest | None:
    kek_dir = _kek_dir(keys_dir)
    path = kek_dir / MANIFEST
    if not path.exists():
        return None
    _check_private_dir(kek_dir)
    try:
        return _parse_manifest(json.loads(read_private_file(path)))
    except KeyError as error:
        raise KeyFileError(f"{path} is invalid: member {error} is missing") from None
    except (ValueError, TypeError) as error:
        raise KeyFileError(f"{path} is invalid: {error}") from None


def _parse_manifest(document: Any) -> Manifest:
    """Validate the manifest; raise ValueError, TypeError or KeyError naming the first problem."""
    if not isinstance(document, dict) or document.get("version") != MANIFEST_VERSION:
        raise ValueError(f"expected an object with version {MANIFEST_VERSION}")
    records = tuple(_parse_record(item) for item in document["keys"])
    if len({record.id for record in records}) != len(records):
        raise ValueError("a KEK id is listed twice")
    if len({record.version for record in records}) != len(records):
        raise ValueError("a KEK version is listed twice")
    if sum(record.source is KekSource.BASE for record in records) > 1:
        raise ValueError("more than one KEK has the source base")
    current = next((record for record in records if record.id == document["current"]), None)
    if current is None or current.retired_at is not None:
        raise ValueError("the current KEK must be listed and not retired")
    return Manifest(current=current.id, keys=records)


def _parse_record(item: Any) -> KekRecord:
    kek_id, version = item["id"], item["version"]
    if not isinstance(kek_id, str) or not KEK_ID_PATTERN.fullmatch(kek_id):
        raise ValueError("a KEK id is not 16 lower-case hex digits")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError("a KEK version must be a positive integer")
    retired_at = item["retired_at"]
    return KekRecord(
        id=kek_id,
        version=version,
        source=KekSource(item["source"]),
        created_at=_parse_time(item["created_at"]),
        retired_at=None if retired_at is None else _parse_time(retired_at),
    )


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError("a time must be an ISO 8601 string")
    return _utc(datetime.fromisoformat(value))


def _write_manifest(keys_dir: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically: readers see the old file or the new one, never a mix."""
    document = {
        "version": MANIFEST_VERSION,
        "current": manifest.current,
        "keys": [
            {
                "id": record.id,
                "version": record.version,
                "source": record.source.value,
                "created_at": record.created_at.isoformat(),
                "retired_at": None if record.retired_at is None else record.retired_at.isoformat(),
            }
            for record in manifest.keys
        ],
    }
    kek_dir = _kek_dir(keys_dir)
    temporary = kek_dir / f".{MANIFEST}.{random_token(16)}"
    _write_durably(temporary, json.dumps(document, indent=2).encode("utf-8") + b"\n")
    temporary.replace(kek_dir / MANIFEST)
    _sync_directory(kek_dir)
